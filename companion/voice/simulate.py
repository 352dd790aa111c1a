"""``companion simulate``: the same loop, with a simulated microphone and speaker, recorded to files."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.audio.files import resample, write_wav
from companion.audio.frames import PIPELINE_RATE, AudioFrame
from companion.audio.sinks import PlayedBlock, SimulatedSpeaker
from companion.audio.sources import Segment, SimulatedMicrophone, SimulationLog
from companion.config import CompanionConfig
from companion.memory.store import MemoryStore
from companion.voice.events import LoopEvent, TurnCompleted, TurnRecord
from companion.voice.runtime import VoiceModels, new_loop

#: A simulated run records at most this much audio (bounded memory).
MAX_RECORDING_S = 1800


@dataclass
class SimulationResult:
    records: list[TurnRecord]
    events: list[LoopEvent]
    log: SimulationLog
    out_dir: Path


class Recording:
    """The child's and the robot's audio on one 16 kHz timeline, plus each reply at the voice's rate."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.mic: list[AudioFrame] = []
        self.played: list[PlayedBlock] = []

    def add_mic(self, frame: AudioFrame) -> None:
        if self.t0 is None:
            self.t0 = frame.t
        if frame.end - self.t0 < MAX_RECORDING_S:
            self.mic.append(frame)

    def add_played(self, block: PlayedBlock) -> None:
        if self.t0 is not None and block.t - self.t0 < MAX_RECORDING_S:
            self.played.append(block)

    def timeline(self) -> np.ndarray:
        if self.t0 is None:
            return np.zeros(0, dtype=np.float32)
        end = max([f.end for f in self.mic] + [b.t + b.samples16k.size / PIPELINE_RATE for b in self.played])
        out = np.zeros(int((end - self.t0) * PIPELINE_RATE) + 1, dtype=np.float32)
        for item_t, samples in [(f.t, f.samples) for f in self.mic] + [(b.t, b.samples16k) for b in self.played]:
            i = int(round((item_t - self.t0) * PIPELINE_RATE))
            n = min(samples.size, out.size - i)
            if n > 0:
                out[i:i + n] += samples[:n]
        return np.clip(out, -1, 1)

    def reply(self, tag: int) -> np.ndarray:
        blocks = [b.samples for b in self.played if b.tag == tag]
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def spoken(models: VoiceModels, text: str) -> np.ndarray:
    """A line of a scripted child, spoken by the TTS, at 16 kHz."""
    speech = models.tts.synthesize_sync(text)
    return resample(speech.samples, speech.rate, PIPELINE_RATE)


async def run_simulation(models: VoiceModels, config: CompanionConfig, segments: list[Segment], out_dir: Path, *,
                         child: str, echo_gain: float = 0.0, noise_floor: float = 0.0,
                         realtime: bool = True, memory: MemoryStore | None = None) -> SimulationResult:
    """Run the loop over ``segments``; with ``memory`` the child's turns and facts are stored, as in chat."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recording = Recording()
    player = SimulatedSpeaker(models.tts.rate, on_block=recording.add_played)
    events: list[LoopEvent] = []

    loop, brain = new_loop(models, config, child, player, on_event=events.append, memory=memory)
    mic = SimulatedMicrophone(segments, idle=loop.is_idle, player=player, echo_gain=echo_gain,
                              noise_floor=noise_floor, realtime=realtime)

    async def frames():
        async for frame in mic.frames():
            recording.add_mic(frame)
            yield frame

    try:
        await loop.run(frames())
    finally:
        await brain.close()
        await player.close()
    records = [e.record for e in events if isinstance(e, TurnCompleted)]
    with (out_dir / "turns.jsonl").open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
    for record in records:
        write_wav(out_dir / f"reply-{record.index:03d}.wav", recording.reply(record.index), player.rate)
    write_wav(out_dir / "conversation.wav", recording.timeline(), PIPELINE_RATE)
    return SimulationResult(records, events, mic.log, out_dir)


def run_simulation_sync(models: VoiceModels, config: CompanionConfig, segments: list[Segment], out_dir: Path,
                        **kwargs) -> SimulationResult:
    return asyncio.run(run_simulation(models, config, segments, out_dir, **kwargs))
