"""Enrolment by talking: the robot learns a child's voice by chatting with them for ~20 s.

A parent asks for it on the dashboard (the child's memory page) with the child beside the robot.
The request lives in the memory database for ten minutes; the loop reads it with the voiceprints
every turn (speaker/household.py). While it stands, every turn is taken for that child: the child's
words go through the child's own conversation first (the safety layer, alerts and the parents'
gates apply as always; a safety or caring line is said as usual), and instead of the language
model's reply the robot says the next of a few reviewed prompts that keep the child talking. Each
spoken turn's embedding is kept in memory only; once ~20 s of speech are heard, the voiceprint is
stored, the request cleared and the robot says thank you. No audio is kept, and nothing is stored
without the parents' consent (checked again at the end).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import numpy as np

from companion.memory.store import MemoryStore
from companion.speaker.enrol import GOOD_SPEECH_S, MIN_SPEECH_S, require_consent, store_voiceprint
from companion.speaker.identify import SpeakerGuess

REQUEST_KEY = "voice_enrolment"
#: A request not taken up within this long lapses (the child went away; no stranger is enrolled later).
REQUEST_TTL_S = 600.0
#: The most turns the robot spends on it; with too little speech by then, it stops without a voiceprint.
MAX_TURNS = 8
#: How the turn of an enrolment is marked (SpeakerGuess.by, TurnPlan.kind).
ENROLLING = "enrolling"

FIRST = "Hi {name}! Your grown-up asked me to learn your voice, so let's chat for a little while. " \
        "What is your favourite toy, and what do you play with it?"
PROMPTS = (
    "Ooh, tell me more! What do you like to play outside?",
    "That sounds fun! What is your favourite animal, and why do you like it?",
    "I love hearing about that. What did you do today?",
    "Great! If you could go anywhere in the world, where would you go?",
    "And what is the yummiest food you have ever eaten?",
    "Tell me about a story or a film you like.",
    "What would you build if you had a giant box of blocks?",
)
DONE = "Thank you, {name}! Now I know your voice, so I'll always remember what you tell me."
NOT_ENOUGH = "Thank you, {name}! I didn't hear quite enough to learn your voice. Let's try again another time."


def request(store: MemoryStore, child: str, *, now: float | None = None) -> float:
    """Ask the robot to learn ``child``'s voice by talking (consent needed); returns when it lapses."""
    require_consent(store)
    until = (now or time.time()) + REQUEST_TTL_S
    store.put_setting(REQUEST_KEY, {"child": child, "until": until})
    return until


def pending_request(store: MemoryStore, *, now: float | None = None) -> tuple[str, float] | None:
    """(child, until) of the request in force (None: no request, lapsed, no consent, child erased)."""
    from companion.parent import settings as parent_settings

    data = store.setting(REQUEST_KEY)
    if not isinstance(data, dict) or not parent_settings.load(store).voice_id:
        return None
    until, child = float(data.get("until", 0)), data.get("child")
    if until < (now or time.time()) or not isinstance(child, str) or child not in store.children():
        return None
    return child, until


def pending(store: MemoryStore, *, now: float | None = None) -> str | None:
    """The child whose voice the robot is to learn now (None: none)."""
    request_ = pending_request(store, now=now)
    return request_[0] if request_ else None


def clear(store: MemoryStore) -> None:
    store.put_setting(REQUEST_KEY, {})


def finish(store: MemoryStore, child: str, model: str, vectors: list[np.ndarray], speech_s: float) -> None:
    """Store the voiceprint heard while talking (runs on the memory worker); the request is cleared."""
    clear(store)
    store_voiceprint(store, child, model, vectors, speech_s)


class TalkingEnrolment:
    """The conversation of the child being enrolled by talking (the loop's ``Brain``): their own
    conversation decides and remembers, the robot's words are the prompts above."""

    def __init__(self, brain, finish_cb: Callable[[list[np.ndarray], float], Awaitable[None]],
                 abandon_cb: Callable[[], Awaitable[None]], *, target_s: float = GOOD_SPEECH_S,
                 min_s: float = MIN_SPEECH_S, max_turns: int = MAX_TURNS) -> None:
        self.brain = brain
        self._finish, self._abandon = finish_cb, abandon_cb
        self.target_s, self.min_s, self.max_turns = target_s, min_s, max_turns
        self.vectors: list[np.ndarray] = []
        self.speech_s = 0.0
        self._pending: SpeakerGuess | None = None
        #: What the planned line leads to: True (the voiceprint is stored once it is said), False (given up).
        self._outcome: bool | None = None
        #: Over: the voiceprint stored (True) or given up (False); None while it goes on.
        self.result: bool | None = None

    @property
    def child(self) -> str:
        return self.brain.child

    def hear(self, guess: SpeakerGuess) -> None:
        """The embedding of the turn being planned (kept only if that turn is spoken)."""
        self._pending = guess

    def _line(self) -> tuple[str, bool | None]:
        extra = self._pending.speech_s if self._pending is not None and self._pending.vector is not None else 0.0
        heard, turns = self.speech_s + extra, len(self.vectors) + 1
        name = self.child.capitalize()
        if heard >= self.target_s:
            return DONE.format(name=name), True
        if turns >= self.max_turns:
            return (DONE if heard >= self.min_s else NOT_ENOUGH).format(name=name), heard >= self.min_s
        if not self.vectors:
            return FIRST.format(name=name), None
        return PROMPTS[(turns - 2) % len(PROMPTS)], None

    async def plan(self, heard: str):
        plan = await self.brain.plan(heard)
        if plan.kind != "model":  # a safety or caring line, a parents' gate, an answer from memory or a card
            return plan
        line, self._outcome = self._line()
        return replace(plan, kind=ENROLLING, line=line, prompt=(), messages=(), avoid=(), learn_facts=False)

    async def remember(self, spoken):
        turn_id = await self.brain.remember(spoken)
        guess, outcome, self._pending = self._pending, self._outcome, None
        if spoken.plan.kind != ENROLLING or guess is None or guess.vector is None or spoken.interrupted:
            return turn_id  # a safety line, or cut short: the child is asked again
        self.vectors.append(guess.vector)
        self.speech_s += guess.speech_s
        if outcome is True:
            await self._finish(self.vectors, self.speech_s)
            self.result = True
        elif outcome is False:
            await self._abandon()
            self.result = False
        return turn_id

    async def warm_next(self, expected=None) -> int:
        return await self.brain.warm_next(expected)

    async def prefill_heard_so_far(self, heard: str) -> int:
        return await self.brain.prefill_heard_so_far(heard)

    def ends_here(self, plan):
        return self.brain.ends_here(plan)

    async def close(self) -> None:
        """The child's own conversation is closed by the household."""
