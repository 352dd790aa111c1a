"""Who is talking, turn by turn: one conversation per enrolled child, one for guests.

The loop asks ``identify`` with the utterance's audio at the moment it starts the ASR (the encoder
runs on its own thread meanwhile) and takes ``brain_for`` the answer: that child's memory, facts,
persona address and daily limit. A voice no voiceprint is close to is a guest's: answered kindly,
with nothing about any child recalled and nothing stored as a child's fact.

The voiceprints are read from the memory database every turn (a few rows): a child enrolled on the
dashboard is known from the next turn, and consent withdrawn (which erases them) stops recognition
at once. With no voiceprint, or no consent, nothing is embedded and every turn is the default
child's, as without this stage. The session's last confident speaker changes only once a turn is
spoken and remembered (``settle``): a speculative turn that is dropped changes nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from companion.speaker.config import SpeakerConfig
from companion.speaker.encoder import Embedding
from companion.speaker.identify import BY_VOICE, GUEST, SpeakerGuess, identify
from companion.speaker.listening import ENROLLING, TalkingEnrolment

log = logging.getLogger(__name__)

#: How a turn's speaker was decided when the encoder failed: a guest's turn (nothing recalled).
FAILED = "failed"


class Encoder(Protocol):
    name: str

    async def embed_async(self, audio: np.ndarray) -> Embedding: ...


@dataclass(frozen=True)
class VoiceState:
    """What the database says this turn: the voiceprints ({} without consent) and the child whose voice
    the robot is learning by talking (speaker/listening.py), if any."""

    prints: Mapping[str, np.ndarray]
    enrolling: str | None = None


class Household:
    def __init__(self, encoder: Encoder, read_state: Callable[[], Awaitable[VoiceState]],
                 config: SpeakerConfig, open_brain: Callable[[str, bool], object], first,
                 on_close: Callable[[], None] | None = None,
                 learnt: Callable[[str, list[np.ndarray], float], Awaitable[None]] | None = None,
                 abandoned: Callable[[], Awaitable[None]] | None = None) -> None:
        """``read_state()``: the voiceprints and any enrolment by talking, from the database;
        ``open_brain(name, guest)`` makes a child's (or the guests') conversation; ``first`` is
        ``[children] default``'s, used while no voice is recognised; ``learnt(child, vectors, speech_s)``
        stores a voiceprint heard while talking, ``abandoned()`` clears a request given up."""
        self.encoder = encoder
        self.config = config
        self._read_state = read_state
        self._learnt, self._abandoned = learnt, abandoned
        #: The enrolment by talking in progress (None: none).
        self.enrolment: TalkingEnrolment | None = None
        self._open = open_brain
        self._first = first
        self._brains = {first.child: first}
        self._on_close = on_close
        #: The conversation of the last turn spoken (the next prompt is prepared for it).
        self.current = first
        #: The session's last speaker identified by voice (None: a guest, or nobody yet).
        self._last: str | None = None

    @property
    def brains(self) -> list:
        return list(self._brains.values())

    async def identify(self, audio: np.ndarray) -> SpeakerGuess | None:
        """Whose voice ``audio`` is; None: nobody is enrolled (or no consent), the default child's turn.
        While the robot learns a child's voice by talking, every turn is that child's."""
        state = await self._read_state()
        prints = state.prints
        if state.enrolling is None and self.enrolment is not None and self.enrolment.result is None:
            self.enrolment = None  # the request lapsed or was withdrawn (consent off): back to normal
        if not prints and state.enrolling is None:
            return None
        try:
            emb = await self.encoder.embed_async(audio)
        except ValueError:  # silent: as little to go on as a "yes"
            return self._kept(0.0)
        if state.enrolling is not None:
            return SpeakerGuess(state.enrolling, None, ENROLLING, emb.speech_s, None, vector=emb.vector)
        c = self.config
        return identify(emb.vector, prints, threshold=c.threshold, speech_s=emb.speech_s, min_speech_s=c.min_speech_s,
                        last=self._last, keep_threshold=c.keep_threshold, keep_margin=c.keep_margin)

    def _kept(self, speech_s: float) -> SpeakerGuess:
        if self._last is not None:
            return SpeakerGuess(self._last, None, "kept", speech_s, None)
        return SpeakerGuess(None, None, GUEST, speech_s, None)

    def brain_for(self, guess: SpeakerGuess | None):
        if guess is None:
            return self._first
        if guess.by == ENROLLING:
            return self._enrolling(guess)
        name = guess.child or self.config.guest
        brain = self._brains.get(name)
        if brain is None:
            brain = self._brains[name] = self._open(name, guess.child is None)
        return brain

    def _enrolling(self, guess: SpeakerGuess) -> TalkingEnrolment:
        child = guess.child
        if self.enrolment is None or self.enrolment.child != child or self.enrolment.result is not None:
            brain = self.brain_for(SpeakerGuess(child, None, BY_VOICE))
            self.enrolment = TalkingEnrolment(brain, functools.partial(self._learnt, child), self._abandoned)
        self.enrolment.hear(guess)
        return self.enrolment

    def settle(self, guess: SpeakerGuess | None) -> None:
        """The turn of ``guess`` was spoken and remembered: it is the session's latest."""
        if guess is not None and (guess.by in (BY_VOICE, ENROLLING) or (guess.by == GUEST
                                                                        and guess.speech_s >= self.config.min_speech_s)):
            self._last = guess.child  # a short unknown "hi" does not make the next "yes" a guest's
        if guess is not None and guess.by == ENROLLING:
            guess = SpeakerGuess(guess.child, None, BY_VOICE)  # the next prompt is prepared for the child
        self.current = self.brain_for(guess)

    async def close(self) -> None:
        """End every conversation of the session (each writes its summary), then the shared worker."""
        try:
            for brain in self._brains.values():
                try:
                    await brain.close()
                except Exception:  # noqa: BLE001 - every child's session is closed even if one fails
                    log.exception("[MEMORY_ERROR] could not close %s's session", brain.child)
        finally:
            if self._on_close is not None:
                self._on_close()
