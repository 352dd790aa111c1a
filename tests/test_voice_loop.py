"""The whole voice loop with the real default models, on simulated audio (real-time paced)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest

from companion.audio.files import read_all
from companion.audio.sources import Segment
from companion.voice.events import (
    BargeIn,
    EchoIgnored,
    LoopState,
    ReplyCancelled,
    StateChanged,
    TurnCompleted,
    TurnDropped,
)
from companion.voice.simulate import run_simulation_sync, spoken
from tests.conftest import RECORDINGS

pytestmark = pytest.mark.real_model

JFK_REFERENCE = ("And so my fellow Americans, ask not what your country can do for you, "
                 "ask what you can do for your country.")


def _norm(text: str) -> str:
    import re

    return re.sub(r"[^a-z' ]+", " ", text.lower()).split().__str__()


def _wer(ref: str, hyp: str) -> float:
    t = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
                       jiwer.ReduceToListOfListOfWords()])
    return jiwer.wer(ref, hyp, reference_transform=t, hypothesis_transform=t)


def test_simulate_jfk_from_the_command_line(real_cache, tmp_path):
    """The loop hears a paused sentence whole: JFK pauses 1.2 s after "And so my fellow Americans," and 1.1 s
    after "ask not what your country can do for you,"; the end-of-turn model keeps listening through both."""
    out = tmp_path / "out"
    # The safety classifier redirects this quote as `override` (0.99, since the session-10 corpus: a known false
    # flag, in issue 14's note); this test is about hearing and timing, so it runs without that one layer and
    # the model answers. The lexicon, the profanity model and the output guard stay on.
    config = tmp_path / "companion.toml"
    text = (Path(__file__).resolve().parents[1] / "configs" / "companion.toml").read_text()
    config.write_text(text.replace("[safety]\n", "[safety]\nclassifier = false\n", 1))
    assert "classifier = false" in config.read_text()
    proc = subprocess.run([sys.executable, "-m", "companion", "--config", str(config), "simulate",
                           str(RECORDINGS / "jfk.flac"), "--out", str(out), "--seed", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in (out / "turns.jsonl").read_text().splitlines()]
    assert len(turns) == 1, turns
    turn = turns[0]
    assert _wer(JFK_REFERENCE, turn["heard"]) <= 0.10, turn["heard"]
    assert turn["turn_end"]["by"].startswith("model") and turn["turn_end"]["probability"] >= 0.5
    assert turn["reply"].strip()
    timings = turn["timings"]
    assert set(timings) == {"speech_end", "asr_ms", "llm_first_token_ms", "tts_first_chunk_ms", "ttfa_ms", "trace"}
    tr = timings["trace"]
    # The stages in order on one clock (ms from the end of speech); speech lies before 0.
    assert tr["speech_start"] < 0 <= tr["asr_start"] < tr["asr_end"] <= tr["first_token"] <= tr["first_clause"]
    assert tr["first_clause"] <= tr["tts_start"] < tr["tts_end"] <= tr["first_audio"]
    # Nothing is played before the endpointer confirmed the end of the child's speech.
    assert tr["end_confirmed"] <= tr["first_audio"] == timings["ttfa_ms"]
    reply = read_all(out / "reply-001.wav")
    assert reply.size > 16000 * 0.5 and np.abs(reply).max() > 0.05
    whole = read_all(out / "conversation.wav")
    assert whole.size / 16000 > 11 + reply.size / 16000 * 0.9  # the child's and the robot's audio, one timeline
    assert "child: " in proc.stdout and "ttfa" in proc.stdout


def test_three_scripted_turns_have_all_timings(voice_models, voice_config, tmp_path):
    lines = ["Hello! What is your name?", "I like dinosaurs.", "What do little cows like to eat?"]
    segments = [Segment(spoken(voice_models, line), label=line) for line in lines]
    result = run_simulation_sync(voice_models, voice_config, segments, tmp_path, child="Mia")
    assert [r.index for r in result.records] == [1, 2, 3]
    for record, line in zip(result.records, lines):
        # Generated speech varies run to run (piper samples noise); the heard text must still be close.
        assert _wer(line, record.heard) <= 0.5, (line, record.heard)
        assert record.reply and not record.interrupted
        t = record.timings
        assert t.asr_ms > 0 and t.llm_first_token_ms > 0 and t.tts_first_chunk_ms > 0
        assert 0 < t.ttfa_ms < 10_000
    # Each turn's event sequence: hearing -> thinking -> speaking -> listening, in that order. (The end-of-turn
    # model may end a turn at "Hello!" and hear "What is your name?" go on before anything is said: thinking ->
    # hearing, then the two are one turn.)
    states = [e.state for e in result.events if isinstance(e, StateChanged)]
    assert states.count(LoopState.SPEAKING) == 3
    for j in (j for j, s in enumerate(states) if s == LoopState.SPEAKING):
        assert states[j - 1] == LoopState.THINKING and states[j + 1] == LoopState.LISTENING, states
        assert LoopState.HEARING in states[:j - 1]
    assert len((tmp_path / "turns.jsonl").read_text().splitlines()) == 3


def test_silence_and_noise_make_no_turn(voice_models, voice_config, tmp_path):
    rng = np.random.default_rng(3)
    silence = np.zeros(16000 * 30, np.float32)
    noise = rng.normal(0, 0.15, 16000 * 30).astype(np.float32)
    result = run_simulation_sync(voice_models, voice_config, [Segment(silence), Segment(noise)], tmp_path,
                                 child="Mia", realtime=False)
    assert result.records == []
    assert not [e for e in result.events if isinstance(e, TurnCompleted)]


def test_barge_in_cuts_playback_fast_and_cancels_generation(voice_models, voice_config, tmp_path):
    ask = spoken(voice_models, "Please tell me a very long story about a brave little dragon.")
    stop = spoken(voice_models, "Wait! What is two plus two?")
    segments = [Segment(ask), Segment(stop, start="during_reply", gap_s=1.2)]
    result = run_simulation_sync(voice_models, voice_config, segments, tmp_path, child="Mia")
    barge = [e for e in result.events if isinstance(e, BargeIn)]
    assert len(barge) == 1, result.events
    onset = result.log.segment_starts[1] + int(np.argmax(np.abs(stop) > 0.02)) / 16000
    # Generous here (real time on a shared 2-core machine); the exact bound (<= 200 ms) is asserted on the
    # virtual clock in tests/test_loop_snapshots.py.
    assert barge[0].cut_t - onset <= 0.5, (barge[0].cut_t - onset)
    assert any(isinstance(e, ReplyCancelled) and e.t >= barge[0].cut_t - 0.05 for e in result.events)
    first, second = result.records[0], result.records[1]
    assert first.interrupted and first.reply  # what was said before the cut is kept
    assert "two" in second.heard.lower() or "2" in second.heard
    assert not second.interrupted and second.reply
    # The cut reply is what the conversation remembers: the recording holds what played until the cut (the
    # child's words ~1.2 s in, the clip's lead silence, the cut), not the long story. A bound of 2.5 s failed
    # once in CI at 2.51 s (real time on a loaded 2-core machine); the cut's own latency is asserted above.
    played = read_all(tmp_path / "reply-001.wav")
    assert played.size / 16000 < 1.2 + 0.3 + 1.5


def test_the_robot_does_not_answer_its_own_echo(voice_models, voice_config, tmp_path):
    ask = spoken(voice_models, "Tell me something about the moon.")
    result = run_simulation_sync(voice_models, voice_config, [Segment(ask)], tmp_path, child="Mia", echo_gain=0.5)
    assert len(result.records) == 1, [r.heard for r in result.records]
    assert not result.records[0].interrupted
    assert not [e for e in result.events if isinstance(e, BargeIn)]
    assert [e for e in result.events if isinstance(e, (EchoIgnored, TurnDropped))], "the echo was heard and ignored"


def test_simulate_rejects_bad_files_with_codes(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\x00" * 2000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path, code in ((bad, "AUDIO_FILE_CORRUPT"), (empty, "AUDIO_FILE_EMPTY"),
                       (tmp_path / "x.txt", "AUDIO_FILE_NOT_FOUND")):
        proc = subprocess.run([sys.executable, "-m", "companion", "simulate", str(path), "--out", str(tmp_path / "o")],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and code in proc.stderr, proc.stderr


def test_run_without_sound_hardware_is_a_coded_error():
    proc = subprocess.run([sys.executable, "-m", "companion", "run"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert any(code in proc.stderr for code in ("AUDIO_BACKEND_MISSING", "AUDIO_NO_MICROPHONE", "AUDIO_NO_SPEAKER"))


def test_a_pause_mid_sentence_drops_the_early_answer_and_hears_it_all(voice_models, voice_config, tmp_path):
    """A pause longer than the tentative end but shorter than the real one: the turn begun early is dropped
    (nothing played, nothing stored) and the robot answers the whole sentence once."""
    from companion.memory.store import MemoryStore
    from companion.voice.events import ClauseSpoken, SpeculationDropped, UtteranceCaptured

    jfk = read_all(RECORDINGS / "jfk.flac")
    first, second = jfk[int(5.3 * 16000):int(7.62 * 16000)], jfk[int(8.2 * 16000):int(10.5 * 16000)]
    pause = np.zeros(int(0.3 * 16000), np.float32)  # early_end 160 ms < pause < end_silence 480 ms
    audio = np.concatenate([first, pause, second])
    memory = MemoryStore(tmp_path / "data")
    result = run_simulation_sync(voice_models, voice_config, [Segment(audio)], tmp_path / "out", child="Mia",
                                 memory=memory)
    assert any(isinstance(e, SpeculationDropped) for e in result.events)
    assert len(result.records) == 1
    heard = _norm(result.records[0].heard)
    assert "country" in heard and "ask" in heard and "what" in heard, result.records[0].heard
    captured = [e for e in result.events if isinstance(e, UtteranceCaptured)]
    first_spoken = next(e for e in result.events if isinstance(e, ClauseSpoken))
    assert len(captured) == 1 and first_spoken.t >= captured[0].t  # nothing played before the real end
    assert len(memory.recent_turns("Mia", 10)) == 1
