"""The stages the voice loop wires together, each behind one small interface.

The loop knows these Protocols, not the classes behind them: faster-whisper, the brain,
the ONNX language model and piper in the product; fakes in tests (voice/testing.py).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import numpy as np

from companion.asr.whisper import Transcript
from companion.brain.conversation import SpokenReply
from companion.brain.guard import LanguageModel
from companion.brain.plan import TurnPlan
from companion.tts.piper_voice import Speech
from companion.speaker.identify import SpeakerGuess
from companion.turn.model import TurnGuess

__all__ = ["Brain", "LanguageModel", "Speakers", "Synthesizer", "Transcriber", "TurnModel"]


class Transcriber(Protocol):
    """Speech to text (runs off the loop)."""

    async def transcribe(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> Transcript: ...


class Brain(Protocol):
    """One child's session: decides a turn, remembers what was said, prepares the next prompt."""

    child: str

    async def plan(self, heard: str) -> TurnPlan: ...

    async def remember(self, spoken: SpokenReply) -> int | None: ...

    async def warm_next(self, expected: SpokenReply | None = None) -> int: ...

    async def prefill_heard_so_far(self, heard: str) -> int: ...

    def ends_here(self, plan: TurnPlan) -> asyncio.Future[float] | None:
        """The language model's probability that the words of ``plan`` end there, queued before the
        reply (None: no such vote, e.g. a fixed line)."""
        ...


class Synthesizer(Protocol):
    """Text to speech (runs off the loop)."""

    async def synthesize(self, text: str) -> Speech: ...


class Speakers(Protocol):
    """Who is talking (speaker/household.py): the conversation of each turn's speaker."""

    current: Brain

    async def identify(self, audio: np.ndarray) -> SpeakerGuess | None: ...

    def brain_for(self, guess: SpeakerGuess | None) -> Brain: ...

    def settle(self, guess: SpeakerGuess | None) -> None: ...


class TurnModel(Protocol):
    """Has the child finished? (runs off the loop, on a lower-priority thread)."""

    async def guess(self, audio: np.ndarray) -> TurnGuess: ...
