"""Settings of the voice loop (kept apart so the typed config can import them without the loop)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoopConfig:
    #: Peak correlation with our own playback above which a speech onset is our echo.
    echo_correlation: float = 0.6
    #: After the robot stops, a transcript repeating its words this soon is echo.
    echo_tail_s: float = 1.5
    #: Clauses waiting for synthesis (bounded; the LLM waits when it is full).
    clause_queue: int = 8
    #: Longest speech sent to ASR as one turn (carried-over pieces included).
    max_heard_s: float = 60.0
    #: Microphone history kept for echo checks and for hearing the words so far (seconds).
    mic_history_s: float = 4.0
    #: While the child talks, the words so far are heard after every this many seconds of speech (while
    #: the mic history still holds it all) and the prompt they begin is prefilled, so the fact cards are
    #: in the model's cache before the child finishes (0: off). See VoiceLoop._hear_so_far.
    early_prefill_s: float = 1.0
    #: Turn records the loop keeps in memory (a ring; each is also emitted as a TurnCompleted event).
    records_kept: int = 256
    #: Loop events kept in memory (a ring, for status and tests).
    events_kept: int = 10_000
    #: A transcript that stops mid-phrase is answered only after this much silence (ms from the end of
    #: speech); one that sounds finished is answered as soon as it is ready. See voice/turn_end.py.
    unfinished_hold_ms: int = 1500
