"""Where the robot's voice goes: a (simulated) speaker that plays in real time and can be cut.

``Player`` is the interface the loop uses: ``enqueue`` audio, ``drain`` until it
has played, ``stop`` at once (barge-in). It keeps a short history of what it
played, at 16 kHz with timestamps, for echo detection and for recordings.
Audio is split into 20 ms blocks; the queue is bounded (60 s of audio).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from companion.audio.files import resample
from companion.audio.frames import PIPELINE_RATE
from companion.errors import CompanionError

BLOCK_S = 0.02
MAX_QUEUED_S = 60.0
#: How much of the played audio is kept for echo detection.
HISTORY_S = 2.0


class PlaybackError(CompanionError):
    code = "AUDIO_OUTPUT_FAILED"


@dataclass(frozen=True, eq=False)
class PlayedBlock:
    t: float
    #: The block at the player's rate, as it went to the device.
    samples: np.ndarray
    #: The block at 16 kHz (for echo detection and the conversation recording).
    samples16k: np.ndarray
    #: Which reply it belonged to.
    tag: int


class Player:
    """Real-time paced playback on the event loop's clock; subclasses hand blocks to a device."""

    def __init__(self, rate: int, *, on_block: Callable[[PlayedBlock], None] | None = None) -> None:
        self.rate = rate
        self._block = int(round(rate * BLOCK_S))
        self._queue: deque[tuple[np.ndarray, int, Callable[[float], None] | None]] = deque()
        self._queued_samples = 0
        self._history: deque[PlayedBlock] = deque(maxlen=int(HISTORY_S / BLOCK_S))
        self._on_block = on_block
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._closed = False

    # -- interface used by the loop -------------------------------------------------
    def enqueue(self, samples: np.ndarray, rate: int, *, tag: int = 0,
                on_start: Callable[[float], None] | None = None) -> None:
        """Queue audio; ``on_start(t)`` is called when its first sample leaves for the device."""
        if samples.size == 0:
            return
        audio = resample(samples, rate, self.rate)
        if (self._queued_samples + audio.size) / self.rate > MAX_QUEUED_S:
            raise PlaybackError(f"playback queue would exceed {MAX_QUEUED_S:.0f} s", code="AUDIO_OUTPUT_OVERFLOW")
        for i in range(0, audio.size, self._block):
            block = audio[i:i + self._block]
            self._queue.append((block, tag, on_start if i == 0 else None))
            self._queued_samples += block.size
        self._idle.clear()
        self._wakeup.set()
        self._ensure_task()

    async def drain(self) -> None:
        await self._idle.wait()

    def stop(self) -> None:
        """Barge-in: drop everything queued; the current block is the last one heard."""
        self._queue.clear()
        self._queued_samples = 0
        self._halt_device()
        self._idle.set()

    @property
    def speaking(self) -> bool:
        return not self._idle.is_set()

    def recent(self, since: float) -> list[PlayedBlock]:
        return [b for b in self._history if b.t + BLOCK_S > since]

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    # -- playback ----------------------------------------------------------------
    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="playback")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not self._closed:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                due = loop.time()
                continue
            block, tag, on_start = self._queue.popleft()
            self._queued_samples -= block.size
            now = loop.time()
            if now - due > 0.1:  # an underrun: the device went quiet, playback restarts now
                due = now
            if on_start is not None:
                on_start(due)
            played = PlayedBlock(due, block, resample(block, self.rate, PIPELINE_RATE), tag)
            self._history.append(played)
            if self._on_block is not None:
                self._on_block(played)
            self._write_device(block)
            due += block.size / self.rate
            await asyncio.sleep(max(0.0, due - loop.time()))

    def _write_device(self, block: np.ndarray) -> None:
        """Hand a block to the sound device (nothing: a simulated speaker)."""

    def _halt_device(self) -> None:
        """Discard what the device has buffered."""


class SimulatedSpeaker(Player):
    """Plays in real time to nowhere; what it played is seen through ``on_block`` and ``recent``."""
