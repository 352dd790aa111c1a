"""The bench's turn-taking set and figures (issue 15): cut-ins counted, end waits measured, no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from companion.audio.sources import SimulationLog
from companion.bench.turns import cut_ins, match_turns, turn_figures
from companion.bench.utterances import (EDGE_S, PAUSE_S, RATE, BenchUtterance, pause_for, paused, pieces, short,
                                        speech_bounds, splice, turn_taking_lines)
from companion.errors import CompanionError
from companion.voice.events import ClauseSpoken, TurnEndGuessed, TurnRecord, TurnTimings


def tone_speak(text: str) -> np.ndarray:
    """A stand-in voice: silence, a tone as long as the text (30 ms a character), silence."""
    t = np.arange(int(0.03 * len(text) * RATE)) / RATE
    voice = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.concatenate([np.zeros(int(0.25 * RATE), np.float32), voice, np.zeros(int(0.4 * RATE), np.float32)])


# -- the set --------------------------------------------------------------------------------

def test_the_paused_set_parses_every_line_has_one_split_and_short_answers_are_there():
    lines = turn_taking_lines()
    assert 20 <= len(lines.paused) <= 30 and 8 <= len(lines.short) <= 12
    for line in lines.paused:
        first, second = line.split("|")  # exactly one split
        assert first.strip() and second.strip(), line
    assert "a dog" in lines.short and "I don't know" in lines.short
    assert not any("|" in s or s.startswith("short") for s in lines.short)
    assert len(set(lines.paused)) == len(lines.paused)


@pytest.mark.parametrize("bad", ["no split here", "two | splits | here", "| nothing before", "short:   "])
def test_a_malformed_line_is_an_error_with_a_code(bad):
    with pytest.raises(CompanionError) as err:
        turn_taking_lines(f"# comment\nfine | line\n{bad}\n")
    assert err.value.code == "BENCH_PAUSED_LINE_INVALID" and "line 3" in err.value.message


# -- generation -----------------------------------------------------------------------------

def test_speech_bounds_trim_the_silence_around_a_tone():
    audio = tone_speak("hello there")  # 0.25 s silence, 0.33 s tone, 0.4 s silence
    lo, hi = speech_bounds(audio)
    assert abs(lo / RATE - 0.25) <= 0.01 and abs(hi / RATE - 0.58) <= 0.01
    assert speech_bounds(np.zeros(RATE, np.float32)) == (0, 0)


def test_the_splice_is_deterministic_per_seed_with_pauses_in_range():
    lines = list(turn_taking_lines().paused[:8])
    a, b = paused(tone_speak, lines, seed=3), paused(tone_speak, lines, seed=3)
    other = paused(tone_speak, lines, seed=4)
    assert [u.pauses for u in a] == [u.pauses for u in b]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b))
    assert [u.pauses for u in a] != [u.pauses for u in other]
    # A line's pause does not depend on which other lines the run keeps (--limit).
    assert paused(tone_speak, lines[3:4], seed=3)[0].pauses == a[3].pauses
    gaps = [end - start for u in a for start, end in u.pauses]
    assert len(gaps) == len(lines) and all(PAUSE_S[0] - 1e-3 <= g <= PAUSE_S[1] + 1e-3 for g in gaps)
    assert len({round(g, 3) for g in gaps}) > 1  # drawn, not one fixed length
    for u, line in zip(a, lines):
        first, second = (h.strip() for h in line.split("|"))
        assert u.kind == "paused" and u.reference == f"{first} {second}" and "|" not in u.reference
        # Each half trimmed to its tone: EDGE_S, the first half, the pause, the second half, EDGE_S.
        (p0, p1), = u.pauses
        assert p0 == pytest.approx(EDGE_S + 0.03 * len(first), abs=0.011)
        assert u.speech_end_s == pytest.approx(p1 + 0.03 * len(second), abs=0.011)
        assert u.seconds == pytest.approx(u.speech_end_s + EDGE_S, abs=0.002)
        assert np.abs(u.audio[int(p0 * RATE) + 2:int(p1 * RATE) - 2]).max() == 0.0  # the pause is silence
    assert pause_for(lines[0], 3) == pause_for(lines[0], 3) != pause_for(lines[0], 4)


def test_a_silent_half_is_an_error_not_a_silent_utterance():
    with pytest.raises(CompanionError) as err:
        splice([tone_speak("hello"), np.zeros(RATE, np.float32)], [0.8])
    assert err.value.code == "BENCH_SPEECH_EMPTY"


def test_short_answers_keep_their_audio_and_know_their_speech_end():
    (u,) = short(tone_speak, ["a dog"])
    assert u.kind == "short" and u.reference == "a dog" and u.pauses == ()
    assert u.speech_end_s == pytest.approx(0.25 + 0.15, abs=0.011)


def test_a_recording_is_played_whole_unless_it_is_long():
    audio = np.zeros(11 * RATE, np.float32)
    spans = [(0.3, 2.0), (2.6, 5.0), (5.8, 10.5)]
    (whole, inside), = pieces(audio, spans)
    assert whole.size == audio.size and inside == spans
    long = np.zeros(40 * RATE, np.float32)
    spans = [(0.5, 4.0), (4.6, 9.0), (9.5, 11.0), (12.0, 20.0), (21.0, 38.0)]
    cut = pieces(long, spans)
    assert all(p.size <= 12 * RATE for p, _ in cut)
    assert [len(s) for _, s in cut][:2] == [3, 1]  # cut at pauses: the first three spans fit in one piece
    assert sum(p.size for p, _ in cut) <= long.size and len(cut) >= 4  # the 17 s span is cut where it must be


# -- figures --------------------------------------------------------------------------------

def record(speech_end: float, *, end_confirmed: float | None = 200.0, ttfa: float | None = 600.0,
           by: str = "model") -> TurnRecord:
    return TurnRecord(index=0, child="Bench", heard="...", reply="...", interrupted=False,
                      timings=TurnTimings(speech_end=speech_end, asr_ms=100.0, llm_first_token_ms=50.0,
                                          tts_first_chunk_ms=80.0, ttfa_ms=ttfa,
                                          trace={"end_confirmed": end_confirmed, "first_audio": ttfa}),
                      safety={}, turn_end={"by": by, "wait_ms": 200, "probability": 0.9, "text_unfinished": False})


def utterance(kind: str, speech_end_s: float, seconds: float) -> BenchUtterance:
    pauses = ((1.0, 1.8),) if kind == "paused" else ()
    return BenchUtterance(kind, "generated", np.zeros(int(seconds * RATE), np.float32), reference="x", kind=kind,
                          speech_end_s=speech_end_s, pauses=pauses)


def test_a_clause_before_the_last_speech_end_is_a_cut_in_and_one_after_is_not():
    # Two paused sentences: speech ends 2.5 s into each; the robot speaks into the first one's pause.
    utts = [utterance("paused", 2.5, 2.7), utterance("paused", 2.5, 2.7), utterance("short", 0.5, 0.7)]
    log = SimulationLog(segment_starts=[10.0, 20.0, 30.0], segment_ends=[12.7, 22.7, 30.7])
    events = [ClauseSpoken("Oh, tell me!", 11.6),  # 1.6 s in: the child is mid-pause
              ClauseSpoken("What a dog!", 13.4),  # after the first sentence's end: fine
              ClauseSpoken("Wow.", 23.2), ClauseSpoken("Yes!", 31.0)]
    assert cut_ins(events, log, utts) == [0]
    records = [record(11.0, end_confirmed=400.0), record(12.52, end_confirmed=250.0),
               record(22.5, end_confirmed=190.0, by="model+text"), record(30.5, end_confirmed=210.0, ttfa=450.0)]
    f = turn_figures(records, events, log, utts)
    assert f["cut_ins"] == 1 and f["paused_n"] == 2 and f["cut_in_rate"] == 0.5
    assert f["cut_in_utterances"] == ["paused"]
    # The fragment turn (speech end 11.0, before the pause) is not a turn answering a complete utterance.
    assert f["end_wait_ms"] == {"p50": 210.0, "p95": 250.0, "n": 3}
    assert f["decided_by"] == {"model": 3, "model+text": 1}
    assert f["short_ttfa_ms"] == 450.0
    assert f["model_ms"] == {"median": None, "max": None, "calls": 0}  # the model was off
    # Shifted after its end, the same clause is no cut-in.
    late = [ClauseSpoken("Oh, tell me!", 12.6)] + events[1:]
    assert cut_ins(late, log, utts) == [] and turn_figures(records, late, log, utts)["cut_in_rate"] == 0.0


def test_short_and_generated_utterances_are_not_counted_for_cut_ins():
    utts = [utterance("short", 0.5, 0.7), utterance("generated", 1.5, 1.7)]
    log = SimulationLog(segment_starts=[0.0, 5.0], segment_ends=[0.7, 6.7])
    events = [ClauseSpoken("early", 0.3), ClauseSpoken("early", 5.5)]
    f = turn_figures([], events, log, utts)
    assert f["cut_ins"] == 0 and f["paused_n"] == 0 and f["cut_in_rate"] is None


def test_end_waits_and_model_times_from_hand_made_runs():
    utts = [utterance("generated", 1.5, 1.7) for _ in range(4)] + [utterance("recording", 4.0, 4.3)]
    starts = [0.0, 10.0, 20.0, 30.0, 40.0]
    log = SimulationLog(segment_starts=starts, segment_ends=[s + u.seconds for s, u in zip(starts, utts)])
    waits = [190.0, 220.0, 1300.0, None]
    records = [record(s + 1.5, end_confirmed=w, by=b) for s, w, b in
               zip(starts, waits, ["model", "model", "text", "silence"])]
    records.append(record(43.0, end_confirmed=2400.0, ttfa=None))  # a pause inside the recording, not its end
    records.append(record(100.0, end_confirmed=5000.0))  # matches no utterance
    events = [TurnEndGuessed(1.5, 0.9, 12.0, 1.6), TurnEndGuessed(11.5, 0.8, 30.0, 11.6),
              TurnEndGuessed(21.5, 0.2, 18.0, 21.6)]
    assert [u is not None for _, u in match_turns(records, log, utts)] == [True] * 5 + [False]
    f = turn_figures(records, events, log, utts)
    assert f["end_wait_ms"] == {"p50": 220.0, "p95": 1300.0, "n": 3}
    assert f["model_ms"] == {"median": 18.0, "max": 30.0, "calls": 3}
    assert f["decided_by"] == {"model": 3, "text": 1, "silence": 1}  # answered turns only
    assert f["paused_n"] == 1 and f["cut_ins"] == 0 and f["short_ttfa_ms"] is None
