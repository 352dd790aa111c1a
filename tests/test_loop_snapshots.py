"""The voice loop's whole event sequence, on a virtual clock with fake stages, against stored snapshots.

Every scenario runs the real loop, endpointer, guard, player and simulated microphone; the
stages are fakes that take scripted virtual time (companion/voice/testing.py), so a run is
deterministic and takes milliseconds. A snapshot stores every event with its time; set
COMPANION_UPDATE_SNAPSHOTS=1 to rewrite them after an intended change (and read the diff).
Each test also asserts the property it is about, so a rewritten snapshot cannot hide a bug.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from companion.audio.sources import Segment
from companion.voice.loop import OOPS
from companion.voice.testing import run_test, tone

SNAPSHOTS = Path(__file__).parent / "snapshots" / "loop"
LINES = {300.0: "Tell me about the moon.", 420.0: "What do cows eat?", 560.0: "Wait, stop!",
         640.0: "Make the model fall over.", 720.0: "Tell me a fun fact."}
LONG = ("Once upon a time a little dragon lived on a hill. It liked to fly over the sea. "
        "Every day it found a new friend. And then it came home for tea.")


def _check_snapshot(name: str, events: list[dict]) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(events, indent=1, ensure_ascii=False) + "\n"
    if os.environ.get("COMPANION_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        if os.environ.get("CI") == "true" and not path.exists():
            pytest.fail(f"snapshot {path.name} is missing (run the test locally to create it)")
        path.write_text(text, encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert events == expected, f"event sequence differs from {path} (COMPANION_UPDATE_SNAPSHOTS=1 rewrites it)"


def _kinds(events: list[dict]) -> list[str]:
    return [e["event"] if e["event"] != "StateChanged" else e["state"] for e in events]


def test_two_plain_turns():
    run = run_test([Segment(tone(300, 1.2)), Segment(tone(420, 0.8))], lines=LINES)
    events = run.normalised()
    _check_snapshot("two_turns", events)
    kinds = _kinds(events)
    first = kinds[:kinds.index("TurnCompleted") + 2]
    assert first == ["HEARING", "SpeechDetected", "HeardSoFar", "Transcribed", "FirstToken", "UtteranceCaptured",
                     "THINKING", "SPEAKING", "ClauseSpoken", "ClauseSpoken", "TurnCompleted", "LISTENING"]
    assert run.spoken == ["That is lovely. Tell me more!"] * 2
    # Each reply's exchange is prefilled while it still plays, with the words it is about to have said.
    assert run.brain.warmed_ahead == ["That is lovely. Tell me more!"] * 2
    # 1.2 s of speech: heard once after 1 s while the child talked (its prompt prefilled); 0.8 s: not.
    assert run.brain.heard_so_far == ["Tell me about the moon."]
    assert [s.plan.heard for s in run.brain.remembered] == ["Tell me about the moon.", "What do cows eat?"]
    captured = [e for e in events if e["event"] == "UtteranceCaptured"]
    spoken = [e for e in events if e["event"] == "ClauseSpoken"]
    assert spoken[0]["t"] >= captured[0]["t"]  # nothing is played before the end of speech is confirmed
    ttfa = [e["record"]["ttfa_ms"] for e in events if e["event"] == "TurnCompleted"]
    assert all(t < 1000 for t in ttfa), ttfa  # ASR 150 + first token 105 + TTS 80 ms, overlapped with the wait


def test_barge_in_cuts_playback_and_cancels_the_model():
    run = run_test([Segment(tone(300, 1.2)), Segment(tone(560, 0.7), start="during_reply", gap_s=0.4)],
                   lines=LINES, replies={LINES[300.0]: LONG})
    events = run.normalised()
    _check_snapshot("barge_in", events)
    barge = [e for e in events if e["event"] == "BargeIn"]
    assert len(barge) == 1
    assert barge[0]["cut_t"] - barge[0]["onset_t"] <= 200  # virtual time: exact, never flaky
    cancelled = [e for e in events if e["event"] == "ReplyCancelled"]
    assert cancelled and cancelled[0]["t"] >= barge[0]["cut_t"]
    first, second = run.brain.remembered
    assert first.interrupted and first.said and first.said in LONG and first.said != LONG
    assert second.plan.heard == "Wait, stop!" and not second.interrupted
    assert run.model.cancelled == 1


def test_the_robots_own_echo_is_ignored():
    run = run_test([Segment(tone(300, 1.2))], lines=LINES, echo_gain=0.5)
    events = run.normalised()
    _check_snapshot("echo", events)
    assert [e for e in events if e["event"] == "EchoIgnored"]
    assert not [e for e in events if e["event"] == "BargeIn"]
    assert len([e for e in events if e["event"] == "TurnCompleted"]) == 1


def test_a_failing_turn_says_oops_and_the_loop_goes_on():
    run = run_test([Segment(tone(640, 1.0)), Segment(tone(420, 0.8))], lines=LINES,
                   replies={LINES[640.0]: None})
    events = run.normalised()
    _check_snapshot("fault", events)
    failed = [e for e in events if e["event"] == "TurnFailed"]
    assert len(failed) == 1 and failed[0]["code"] == "TURN_FAILED"
    assert run.tts.texts[0] == OOPS
    assert [s.plan.heard for s in run.brain.remembered] == ["What do cows eat?"]  # the next turn is answered
    assert _kinds(events)[-1] == "LISTENING"


def test_an_unsafe_clause_mid_reply_is_never_synthesised():
    script = "Sure! Here is a fun fact. You can make a bomb with a bottle. Cats purr too."
    run = run_test([Segment(tone(720, 1.0))], lines=LINES, replies={LINES[720.0]: script})
    events = run.normalised()
    _check_snapshot("output_blocked", events)
    synthesised = " ".join(run.tts.texts).lower()
    assert "bomb" not in synthesised and "cats purr" not in synthesised
    assert run.tts.texts[0].startswith("Sure!")
    blocked = [e for e in events if e["event"] == "ClauseBlocked"]
    assert len(blocked) == 1 and blocked[0]["category"].startswith("output")
    record = next(e["record"] for e in events if e["event"] == "TurnCompleted")
    assert record["safety"]["action"] == "redirect" and "bomb" not in record["reply"].lower()


def test_a_pause_mid_sentence_drops_the_early_answer_and_hears_it_all():
    gap = np.zeros(int(0.3 * 16000), np.float32)  # longer than the tentative end, shorter than the real one
    audio = np.concatenate([tone(300, 0.8), gap, tone(300, 0.8)])
    run = run_test([Segment(audio)], lines=LINES)
    events = run.normalised()
    _check_snapshot("speculation_dropped", events)
    assert [e for e in events if e["event"] == "SpeculationDropped"]
    assert len(run.brain.remembered) == 1
    captured = [e for e in events if e["event"] == "UtteranceCaptured"]
    assert len(captured) == 1 and captured[0]["speech_end"] - captured[0]["speech_start"] >= 1800
    first_spoken = next(e for e in events if e["event"] == "ClauseSpoken")
    assert first_spoken["t"] >= captured[0]["t"]


def test_the_words_so_far_are_heard_while_the_child_talks_and_leave_the_turn_as_it_was():
    """Every ``early_prefill_s`` of speech the loop hears the words so far and the brain prefills their
    prompt; off (0), nothing is heard early. The turn itself (virtual time: its events and timing)
    is the same either way; that the real cores are not slowed is `companion bench`'s to measure."""
    from companion.voice.config import LoopConfig

    segments = [Segment(tone(300, 2.6))]
    on = run_test(segments, lines=LINES)
    off = run_test(segments, lines=LINES, config=LoopConfig(early_prefill_s=0))
    assert on.brain.heard_so_far == ["Tell me about the moon."] * 2  # after 1 s and 2 s of speech
    assert off.brain.heard_so_far == [] and "HeardSoFar" not in _kinds(off.normalised())
    heard = [e for e in on.normalised() if e["event"] == "HeardSoFar"]
    captured = next(e for e in on.normalised() if e["event"] == "UtteranceCaptured")
    assert all(e["t"] < captured["t"] for e in heard)
    ttfa = lambda run: [e["record"]["ttfa_ms"] for e in run.normalised() if e["event"] == "TurnCompleted"]
    assert ttfa(on) == ttfa(off)
