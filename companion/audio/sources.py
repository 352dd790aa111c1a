"""Where the child's voice comes from: a simulated microphone (files, generated speech) or a real one.

Both produce 16 kHz mono ``AudioFrame``s paced in real time on the event loop's
clock, so the loop cannot tell them apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from companion.audio.files import read_chunks
from companion.audio.frames import PIPELINE_RATE, AudioFrame
from companion.audio.sinks import Player

CHUNK_S = 0.02


@dataclass(frozen=True)
class Segment:
    """One thing the simulated child says: a file (streamed) or an array of 16 kHz samples."""

    audio: Path | np.ndarray
    #: "after_reply": wait until the robot is listening again, then ``gap_s`` of silence.
    #: "during_reply": start ``gap_s`` after the robot's voice starts (to interrupt it).
    start: str = "after_reply"
    gap_s: float = 0.6
    label: str = ""

    def chunks(self) -> Iterator[np.ndarray]:
        if isinstance(self.audio, Path):
            yield from read_chunks(self.audio, chunk_samples=PIPELINE_RATE)
        else:
            yield self.audio.astype(np.float32, copy=False)


@dataclass
class SimulationLog:
    """What the simulated microphone did, on the session clock (for tests and recordings)."""

    segment_starts: list[float] = field(default_factory=list)
    segment_ends: list[float] = field(default_factory=list)


class SimulatedMicrophone:
    """Streams segments as a microphone would, with silence between them, optionally with echo.

    ``idle()`` tells when the robot is listening with no turn in progress (turn-taking).
    ``echo_gain`` > 0 mixes what ``player`` plays back into the input, ``echo_delay_s`` late,
    as a speaker next to a microphone would.
    """

    def __init__(self, segments: list[Segment], *, idle: Callable[[], bool], player: Player | None = None,
                 echo_gain: float = 0.0, echo_delay_s: float = 0.03, tail_s: float = 1.5,
                 max_wait_s: float = 120.0, noise_floor: float = 0.0, seed: int = 0, realtime: bool = True,
                 endless: bool = False) -> None:
        self.segments = segments
        self._idle = idle
        self._player = player
        self.echo_gain = echo_gain
        self.echo_delay_s = echo_delay_s
        self.tail_s = tail_s
        self.max_wait_s = max_wait_s
        self.noise_floor = noise_floor
        self._rng = np.random.default_rng(seed)
        #: False: frames as fast as the loop takes them (only for runs where the robot never answers).
        self.realtime = realtime
        #: After the last segment, go on with silence until cancelled (a service fed from files).
        self.endless = endless
        self.log = SimulationLog()
        self._n = int(PIPELINE_RATE * CHUNK_S)
        self._sent = 0
        self._t0 = 0.0

    def _now_t(self) -> float:
        return self._t0 + self._sent / PIPELINE_RATE

    async def _emit(self, samples: np.ndarray) -> AudioFrame:
        loop = asyncio.get_running_loop()
        t = self._now_t()
        if self.realtime:  # a microphone delivers a block once it has been captured
            await asyncio.sleep(max(0.0, t + len(samples) / PIPELINE_RATE - loop.time()))
        else:
            await asyncio.sleep(0)
        mixed = samples
        if self.noise_floor:
            mixed = mixed + self._rng.normal(0, self.noise_floor, samples.size).astype(np.float32)
        if self.echo_gain and self._player is not None:
            mixed = mixed + self._echo(t, samples.size)
        self._sent += samples.size
        return AudioFrame.of(np.clip(mixed, -1, 1), PIPELINE_RATE, t)

    def _echo(self, t: float, n: int) -> np.ndarray:
        """The played audio that reaches the mic in [t, t + n) after the echo delay."""
        assert self._player is not None
        out = np.zeros(n, dtype=np.float32)
        start = t - self.echo_delay_s
        for block in self._player.recent(start - 0.1):
            offset = int(round((block.t - start) * PIPELINE_RATE))
            src = block.samples16k
            lo, hi = max(0, offset), min(n, offset + src.size)
            if hi > lo:
                out[lo:hi] += src[lo - offset:hi - offset] * self.echo_gain
        return out

    async def _silence_until(self, ready: Callable[[], bool], min_s: float) -> None:
        silent = np.zeros(self._n, dtype=np.float32)
        waited = 0.0
        quiet = 0.0
        while waited < self.max_wait_s:
            if ready():
                quiet += CHUNK_S
                if quiet >= min_s:
                    return
            else:
                quiet = 0.0
            yield await self._emit(silent)
            waited += CHUNK_S

    async def frames(self) -> AsyncIterator[AudioFrame]:
        self._t0 = asyncio.get_running_loop().time()
        for seg in self.segments:
            if seg.start == "during_reply":
                assert self._player is not None, "during_reply needs the player"
                player = self._player
                async for f in self._silence_until(lambda: player.speaking, seg.gap_s):
                    yield f
            else:
                async for f in self._silence_until(self._idle, seg.gap_s):
                    yield f
            self.log.segment_starts.append(self._now_t())
            for chunk in seg.chunks():
                for i in range(0, chunk.size, self._n):
                    yield await self._emit(chunk[i:i + self._n])
            self.log.segment_ends.append(self._now_t())
        if self.endless:
            silent = np.zeros(self._n, dtype=np.float32)
            while True:
                yield await self._emit(silent)
        async for f in self._silence_until(self._idle, self.tail_s):
            yield f
