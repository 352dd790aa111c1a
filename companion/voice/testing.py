"""The voice loop without real time or real models: a virtual clock, fake stages and ``run_test``.

``run_test(segments, ...)`` streams a scripted child (tones standing for words) through
the real loop, endpointer, guard, player and simulated microphone, with fake stages
that take scripted *virtual* time, and returns every event the loop emitted. Time is
the event loop's own clock, made virtual: when nothing is ready, it jumps to the next
timer instead of sleeping, and it stands still while a thread works, so a run is
deterministic and takes milliseconds. Tests compare the whole event sequence of a turn
with a stored snapshot (tests/snapshots/).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum

import numpy as np

from companion.asr.whisper import Transcript
from companion.audio.frames import PIPELINE_RATE
from companion.audio.sinks import SimulatedSpeaker
from companion.audio.sources import Segment, SimulatedMicrophone
from companion.brain.conversation import SpokenReply
from companion.brain.plan import TurnPlan
from companion.llm.generate import Gate, GenerationResult, TokenEvent
from companion.llm.sampling import SamplingParams
from companion.safety.check import SafetyConfig, SafetyLayer
from companion.tts.piper_voice import Speech
from companion.turn.config import TurnConfig
from companion.turn.model import TurnGuess
from companion.vad.endpoint import EndpointConfig, Endpointer
from companion.vad.silero import WINDOW
from companion.voice.config import LoopConfig
from companion.voice.events import LoopEvent, TurnCompleted
from companion.voice.loop import VoiceLoop

# -- the clock --------------------------------------------------------------------------------


class _JumpingSelector:
    """Wraps the loop's selector: a wait for a timer jumps the virtual clock instead of sleeping."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None):
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None or self._loop.threads_busy:
            # Nothing scheduled, or a thread is working: wait for it in real time, with the clock still.
            return self._real.select(None if timeout is None else 0.05)
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name):
        return getattr(self._real, name)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` only moves when every task waits for a timer."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual = 1000.0
        self._busy = 0
        self._selector = _JumpingSelector(self._selector, self)

    def time(self) -> float:
        return self._virtual

    def advance(self, seconds: float) -> None:
        self._virtual += max(0.0, seconds)

    @property
    def threads_busy(self) -> bool:
        return self._busy > 0

    def run_in_executor(self, executor, func, *args):
        self._busy += 1
        future = super().run_in_executor(executor, func, *args)

        def done(_f) -> None:
            self._busy -= 1

        future.add_done_callback(done)
        return future


def run_virtual(coro):
    """``asyncio.run`` on a virtual clock."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# -- fake stages ----------------------------------------------------------------------------


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    """A scripted "word": a tone whose pitch the fake transcriber maps back to text."""
    t = np.arange(int(seconds * PIPELINE_RATE)) / PIPELINE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


class EnergyVAD:
    """Speech probability from a window's loudness (the fake for Silero)."""

    def __init__(self, level: float = 0.02) -> None:
        self.level = level
        self._pending = np.zeros(0, np.float32)

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> list[float]:
        buf = np.concatenate([self._pending, samples])
        n = buf.size // WINDOW
        self._pending = buf[n * WINDOW:].copy()
        rms = [float(np.sqrt(np.mean(buf[i * WINDOW:(i + 1) * WINDOW] ** 2))) for i in range(n)]
        return [0.95 if r >= self.level else 0.02 for r in rms]


class ToneTranscriber:
    """Maps the utterance's dominant pitch to a scripted line; ``asr_s`` of virtual time per call."""

    def __init__(self, lines: dict[float, str], asr_s: float = 0.15) -> None:
        self.lines = lines
        self.asr_s = asr_s
        self.calls = 0

    async def transcribe(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> Transcript:
        self.calls += 1
        await asyncio.sleep(self.asr_s)
        spectrum = np.abs(np.fft.rfft(audio))
        peak = float(np.fft.rfftfreq(audio.size, 1 / PIPELINE_RATE)[int(np.argmax(spectrum))])
        freq = min(self.lines, key=lambda f: abs(f - peak))
        if abs(freq - peak) > 20:
            return Transcript("", 0.9, -2.0, self.asr_s * 1000, rejected="no_speech")
        return Transcript(self.lines[freq], 0.01, -0.2, self.asr_s * 1000)


class ScriptedModel:
    """The language model stage: a scripted reply per prompt, token by token in virtual time.

    A reply of ``None`` raises (a model that falls over)."""

    def __init__(self, replies: dict[str, str | None], default: str = "That is lovely. Tell me more!",
                 first_token_s: float = 0.1, token_s: float = 0.03) -> None:
        self.replies = replies
        self.default = default
        self.first_token_s = first_token_s
        self.token_s = token_s
        self.cancelled = 0

    async def stream(self, prompt_ids: Sequence[int], params: SamplingParams, gate: Gate | None = None,
                     avoid: Sequence[Sequence[int]] = ()) -> AsyncIterator[TokenEvent | GenerationResult]:
        heard = bytes(prompt_ids).decode("utf-8")
        reply = self.replies.get(heard, self.default)
        if reply is None:
            raise RuntimeError("the model fell over")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(reply.split(" "))]
        elapsed, finished = 0.0, False
        try:
            for i, piece in enumerate(pieces):
                step = self.first_token_s if i == 0 else self.token_s
                await asyncio.sleep(step)
                elapsed += step
                yield TokenEvent(i, piece, i, elapsed)
            finished = True
            yield GenerationResult(reply, tuple(range(len(pieces))), "stop", len(prompt_ids), 0, self.first_token_s,
                                   elapsed)
        finally:
            if not finished:
                self.cancelled += 1


class ScriptedBrain:
    """The brain stage with no model or database: every line goes to the model; the real safety layer
    (lexicon only) decides redirects and guards the reply; what is remembered is kept in a list."""

    def __init__(self, child: str = "kid", max_words: int = 40, plan_s: float = 0.005) -> None:
        self.child = child
        self.max_words = max_words
        self.plan_s = plan_s
        self.safety = SafetyLayer(SafetyConfig(profanity_model=False))
        self.remembered: list[SpokenReply] = []
        #: Replies whose exchange was prefilled while they were still playing (``warm_next(expected)``).
        self.warmed_ahead: list[str] = []
        #: What the loop heard while the child was still talking (``prefill_heard_so_far``).
        self.heard_so_far: list[str] = []
        #: What ``ends_here`` answers (None: no vote) and after how long; what it was asked about.
        self.ends_p: float | None = None
        self.ends_s = 0.05
        self.asked_ends: list[str] = []

    async def plan(self, heard: str) -> TurnPlan:
        await asyncio.sleep(self.plan_s)
        verdict = self.safety.check_input(heard)
        line = None if verdict.action == "answer" else self.safety.reply(verdict, heard)
        return TurnPlan(heard=heard, verdict=verdict, kind="model" if line is None else "safety", line=line,
                        prompt=tuple(heard.encode("utf-8")), history=(), guard=self.safety,
                        max_words=self.max_words, volume=1.0, learn_facts=line is None,
                        alert=verdict.category if verdict.action == "alert" else None)

    async def remember(self, spoken: SpokenReply) -> int | None:
        self.remembered.append(spoken)
        return len(self.remembered)

    async def warm_next(self, expected: SpokenReply | None = None) -> int:
        if expected is not None:
            self.warmed_ahead.append(expected.said)
        return 0

    async def prefill_heard_so_far(self, heard: str) -> int:
        self.heard_so_far.append(heard)
        return 0

    def ends_here(self, plan: TurnPlan) -> asyncio.Future[float] | None:
        """``ends_p`` (None: no vote), after ``ends_s`` seconds; the words it was asked about are kept."""
        if plan.kind != "model" or self.ends_p is None:
            return None
        self.asked_ends.append(plan.heard)
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(self.ends_s, lambda: future.done() or future.set_result(self.ends_p))
        return future

    async def close(self) -> None:
        self.closed = True


class ToneTurnModel:
    """The end-of-turn stage: the probability scripted for the last "word"'s pitch (default 0.9);
    ``fail`` makes every call raise (a broken model file)."""

    def __init__(self, probabilities: dict[float, float], default: float = 0.9, fail: bool = False) -> None:
        self.probabilities = probabilities
        self.default = default
        self.fail = fail
        self.calls = 0

    async def guess(self, audio: np.ndarray) -> TurnGuess:
        return await asyncio.get_running_loop().run_in_executor(None, self.predict, audio)

    def predict(self, audio: np.ndarray) -> TurnGuess:
        self.calls += 1
        if self.fail:
            raise RuntimeError("the end-of-turn model fell over")
        loud = np.nonzero(np.abs(audio) > 0.05)[0]
        last = audio[max(0, loud[-1] - 4000):loud[-1] + 1] if loud.size else audio
        spectrum = np.abs(np.fft.rfft(last))
        peak = float(np.fft.rfftfreq(last.size, 1 / PIPELINE_RATE)[int(np.argmax(spectrum))])
        near = [f for f in self.probabilities if abs(f - peak) <= 20]
        return TurnGuess(self.probabilities[near[0]] if near else self.default, 1.0)


class ToneVoice:
    """The TTS stage: a tone as long as the text (~60 ms a character's worth of syllables), in virtual time."""

    rate = 16_000

    def __init__(self, synth_s: float = 0.08, freq: float = 900.0) -> None:
        self.synth_s = synth_s
        self.freq = freq
        self.texts: list[str] = []

    async def synthesize(self, text: str) -> Speech:
        self.texts.append(text)
        await asyncio.sleep(self.synth_s)
        return Speech(tone(self.freq, 0.2 + 0.012 * len(text), 0.2), self.rate, self.synth_s * 1000)


# -- the harness ------------------------------------------------------------------------------


@dataclass
class TestRun:
    """What ``run_test`` saw."""

    events: list[LoopEvent]
    brain: ScriptedBrain
    model: ScriptedModel
    tts: ToneVoice
    t0: float = 0.0
    spoken: list[str] = field(default_factory=list)

    def normalised(self) -> list[dict]:
        """The events as plain data, times in ms from the start: what a snapshot stores."""
        return [normalise(e, self.t0) for e in self.events]


def normalise(event: LoopEvent, t0: float) -> dict:
    out: dict = {"event": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if f.name == "record":
            value = {"index": value.index, "heard": value.heard, "reply": value.reply,
                     "interrupted": value.interrupted, "safety": value.safety,
                     "ttfa_ms": value.timings.ttfa_ms}
        elif f.name in ("t", "onset_t", "cut_t", "speech_start", "speech_end"):
            value = round((value - t0) * 1000, 1)
        elif isinstance(value, Enum):
            value = value.name
        elif isinstance(value, float):
            value = round(value, 3)
        elif is_dataclass(value):
            continue
        out[f.name] = value
    return out


class ToneEncoder:
    """The speaker encoder's stand-in: a tone's "voice" is its pitch. The vector is a bump over pitch bins,
    so two tones 100 Hz apart have a cosine of ~0.1 and the same tone 1.0 (``fail``: it raises)."""

    BINS = np.arange(100.0, 1500.0, 20.0)

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    def vector(self, freq: float) -> np.ndarray:
        v = np.exp(-0.5 * ((self.BINS - freq) / 30.0) ** 2)
        return (v / np.linalg.norm(v)).astype(np.float32)

    async def embed_async(self, audio: np.ndarray):
        from companion.speaker.encoder import Embedding

        self.calls += 1
        await asyncio.sleep(0.03)
        if self.fail:
            raise RuntimeError("scripted speaker encoder failure")
        loud = audio[np.abs(audio) > 0.01]
        if len(loud) == 0:
            raise ValueError("the audio is silent")
        spectrum = np.abs(np.fft.rfft(loud))
        freq = float(np.fft.rfftfreq(len(loud), 1 / 16_000)[int(np.argmax(spectrum))])
        return Embedding(self.vector(freq), round(len(loud) / 16_000, 2), 30.0)


def run_test(segments: list[Segment], *, lines: dict[float, str], replies: dict[str, str | None] | None = None,
             echo_gain: float = 0.0, config: LoopConfig = LoopConfig(),
             endpoint: EndpointConfig = EndpointConfig(), turn_model: ToneTurnModel | None = None,
             turn: TurnConfig = TurnConfig(), speakers=None, brain: ScriptedBrain | None = None) -> TestRun:
    """Run the loop over ``segments`` (tones) on the virtual clock with the fake stages (``turn_model``
    None: turns end by the silence rule; ``speakers``: a Household of ScriptedBrains; ``brain``: this one)."""
    brain, model, tts = brain or ScriptedBrain(), ScriptedModel(replies or {}), ToneVoice()
    if speakers is not None:
        brain = speakers.current
    events: list[LoopEvent] = []

    async def scenario() -> float:
        t0 = asyncio.get_running_loop().time()
        player = SimulatedSpeaker(tts.rate)
        loop = VoiceLoop(endpointer=Endpointer(EnergyVAD(), endpoint), asr=ToneTranscriber(lines), brain=brain,
                         model=model, sampling=SamplingParams(), tts=tts, player=player, config=config,
                         on_event=events.append, turn_model=turn_model, turn_config=turn, speakers=speakers)
        mic = SimulatedMicrophone(segments, idle=loop.is_idle, player=player, echo_gain=echo_gain)
        try:
            await loop.run(mic.frames())
        finally:
            await player.close()
        return t0

    t0 = run_virtual(scenario())
    run = TestRun(events, brain, model, tts, t0)
    run.spoken = [e.record.reply for e in events if isinstance(e, TurnCompleted)]
    return run


__all__ = ["EnergyVAD", "ScriptedBrain", "ScriptedModel", "TestRun", "ToneEncoder", "ToneTranscriber", "ToneTurnModel",
           "ToneVoice",
           "VirtualClockLoop", "run_test", "run_virtual", "tone"]
