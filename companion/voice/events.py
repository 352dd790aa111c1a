"""Frozen events the loop emits at every step, and the record of a whole turn."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum

from companion.speaker.identify import SpeakerGuess


class LoopState(IntEnum):
    LISTENING = 0
    HEARING = 1
    THINKING = 2
    SPEAKING = 3


@dataclass(frozen=True)
class StateChanged:
    state: LoopState
    t: float


@dataclass(frozen=True)
class SpeechDetected:
    t: float


@dataclass(frozen=True)
class UtteranceCaptured:
    speech_start: float
    speech_end: float
    forced: bool
    t: float


@dataclass(frozen=True)
class Transcribed:
    text: str
    asr_ms: float
    t: float


@dataclass(frozen=True)
class HeardSoFar:
    """The child's words so far, heard while they are still talking (the prompt they begin is prefilled)."""

    text: str
    t: float


@dataclass(frozen=True)
class TurnDropped:
    """A captured utterance that is not a child's words to answer (noise, hallucination, our own echo)."""

    reason: str
    text: str
    t: float


@dataclass(frozen=True)
class FirstToken:
    ms: float
    t: float


@dataclass(frozen=True)
class ClauseSpoken:
    text: str
    t: float


@dataclass(frozen=True)
class ClauseBlocked:
    """A clause of the model's reply failed the output check: it and the rest of the reply are not spoken."""

    category: str
    t: float


@dataclass(frozen=True)
class BargeIn:
    """The child spoke over the robot: playback cut at ``cut_t``, speech began at ``onset_t``."""

    onset_t: float
    cut_t: float


@dataclass(frozen=True)
class ReplyCancelled:
    """Generation and speech of a reply were stopped (the child spoke)."""

    t: float


@dataclass(frozen=True)
class SpeculationDropped:
    """The child went on after a short pause: the turn begun at the tentative end is dropped, unheard."""

    t: float


@dataclass(frozen=True)
class EchoIgnored:
    similarity: float
    t: float


@dataclass(frozen=True)
class TurnEndGuessed:
    """The end-of-turn model heard the pause after ``speech_end``: ``probability`` the child has finished."""

    speech_end: float
    probability: float
    model_ms: float
    t: float


@dataclass(frozen=True)
class SpeakerIdentified:
    """Whose voice the utterance ending at ``speech_end`` is (``guess.child`` None: a guest)."""

    speech_end: float
    guess: SpeakerGuess
    t: float


@dataclass(frozen=True)
class TurnEndDecided:
    """How much silence after ``speech_end`` ends the turn, and why (made again when a vote arrives).

    ``by``: "model+text", "model", "text" or "silence" (no model: the silence rule)."""

    speech_end: float
    wait_ms: int
    by: str
    probability: float | None
    text_unfinished: bool | None
    t: float


@dataclass(frozen=True)
class TurnFailed:
    code: str
    message: str
    t: float


@dataclass(frozen=True)
class TurnTimings:
    #: End of the child's speech on the session clock (seconds).
    speech_end: float
    asr_ms: float
    llm_first_token_ms: float | None
    tts_first_chunk_ms: float | None
    #: End of the child's speech -> first reply sample leaves for the speaker.
    ttfa_ms: float | None
    #: Stage boundaries in ms from the end of the child's speech (``speech_start`` is negative; ASR
    #: may start before 0 + the endpointer's wait when the turn began speculatively).
    trace: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TurnRecord:
    index: int
    child: str
    heard: str
    #: What was actually spoken (cut short when the child interrupted).
    reply: str
    interrupted: bool
    timings: TurnTimings
    #: {"action": "answer|redirect|alert", "category": ...}
    safety: dict
    #: {"prompt": n, "cached": n from the prefix cache, "reply": n, "tok_s": decode speed in the loop} (0 tokens: a fixed safety or memory line)
    tokens: dict = field(default_factory=dict)
    #: How the end of the turn was decided: {"by", "wait_ms", "probability", "text_unfinished"} (see TurnEndDecided).
    turn_end: dict = field(default_factory=dict)
    #: Who was talking (speaker/identify.py ``SpeakerGuess.to_json``); None: voices are not recognised.
    speaker: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TurnCompleted:
    record: TurnRecord
    t: float


LoopEvent = (StateChanged | SpeechDetected | UtteranceCaptured | Transcribed | TurnDropped | FirstToken
             | ClauseSpoken | ClauseBlocked | BargeIn | ReplyCancelled | SpeculationDropped | EchoIgnored | TurnEndGuessed
             | TurnEndDecided | SpeakerIdentified | TurnFailed | TurnCompleted)
