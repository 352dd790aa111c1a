"""Turn-taking figures of ``companion bench`` (issue 15): cut-ins as well as speed.

A cut-in is the robot starting to speak while the child has not finished: a clause
begins after an utterance's playback starts and before the end of its last speech
(``BenchUtterance.speech_end_s``). It is counted over the utterances with pauses
inside the sentence: the paused set and the recordings, played whole. Everything here
is computed from what a run leaves behind (turn records, loop events, the simulated
microphone's log, the utterances), so it is tested without any model.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence

from companion.audio.sources import SimulationLog
from companion.bench.utterances import BenchUtterance
from companion.voice.events import ClauseSpoken, LoopEvent, TurnEndGuessed, TurnRecord

#: A turn's speech may end this long after its segment's playback ended and still answer it (the VAD's
#: end lags the audio a little).
MATCH_AFTER_S = 0.6
#: A turn answers the end of an utterance when its speech ended no earlier than this before the
#: utterance's last speech end. Smaller than any pause plus the speech after it (>= 0.35 + 0.2 s).
END_SLACK_S = 0.5
#: Kinds whose sentences have pauses inside: the cut-in rate is counted over these.
PAUSED_KINDS = ("paused", "recording")

Turn = tuple[TurnRecord, BenchUtterance | None]


def match_turns(records: Sequence[TurnRecord], log: SimulationLog,
                utterances: Sequence[BenchUtterance]) -> list[Turn]:
    """Which utterance each turn answered: the one whose playback its end of speech fell in (None: none)."""
    starts, ends = log.segment_starts, log.segment_ends
    out = []
    for record in records:
        end = record.timings.speech_end
        k = next((i for i in range(min(len(starts), len(ends), len(utterances)))
                  if starts[i] <= end <= ends[i] + MATCH_AFTER_S), None)
        out.append((record, utterances[k] if k is not None else None))
    return out


def answers_the_end(record: TurnRecord, utterance: BenchUtterance, segment_start: float) -> bool:
    """The turn heard the utterance to its last speech (not a fragment before a pause)."""
    if utterance.speech_end_s is None:
        return True
    return record.timings.speech_end >= segment_start + utterance.speech_end_s - END_SLACK_S


def cut_ins(events: Sequence[LoopEvent], log: SimulationLog, utterances: Sequence[BenchUtterance]) -> list[int]:
    """Indices of the paused-kind utterances the robot spoke into before the child had finished."""
    spoken = [e.t for e in events if isinstance(e, ClauseSpoken)]
    out = []
    for k, u in enumerate(utterances[:len(log.segment_starts)]):
        if u.kind not in PAUSED_KINDS or u.speech_end_s is None:
            continue
        start = log.segment_starts[k]
        if any(start < t < start + u.speech_end_s for t in spoken):
            out.append(k)
    return out


def turn_figures(records: Sequence[TurnRecord], events: Sequence[LoopEvent], log: SimulationLog,
                 utterances: Sequence[BenchUtterance]) -> dict:
    """The ``turn`` section of the bench's figures."""
    played = utterances[:len(log.segment_starts)]
    paused = [u for u in played if u.kind in PAUSED_KINDS and u.speech_end_s is not None]
    cut = cut_ins(events, log, utterances)
    index = {id(u): k for k, u in enumerate(utterances)}
    turns = match_turns(records, log, utterances)
    complete = [r for r, u in turns if u is not None and answers_the_end(r, u, log.segment_starts[index[id(u)]])]
    waits = [r.timings.trace["end_confirmed"] for r in complete if r.timings.trace.get("end_confirmed") is not None]
    guessed = [e.model_ms for e in events if isinstance(e, TurnEndGuessed)]
    answered = [r for r in records if r.timings.ttfa_ms is not None]
    short_ttfa = [r.timings.ttfa_ms for r, u in turns
                  if u is not None and u.kind == "short" and r.timings.ttfa_ms is not None]
    return {
        "cut_in_rate": round(len(cut) / len(paused), 3) if paused else None,
        "cut_ins": len(cut),
        "paused_n": len(paused),
        "cut_in_utterances": [utterances[k].label for k in cut],
        "end_wait_ms": {"p50": percentile(waits, 0.50), "p95": percentile(waits, 0.95), "n": len(waits)},
        "model_ms": {"median": round(statistics.median(guessed), 1) if guessed else None,
                     "max": round(max(guessed), 1) if guessed else None, "calls": len(guessed)},
        "decided_by": dict(Counter(r.turn_end.get("by") or "unrecorded" for r in answered).most_common()),
        "short_ttfa_ms": percentile(short_ttfa, 0.50),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every figure is one a turn really had)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))], 1)
