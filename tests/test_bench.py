"""``companion bench``: the whole loop measured on real models; figures reported, never asserted as targets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from companion.bench.utterances import pieces, recording_references
from tests.conftest import RECORDINGS

KEYS = ["ttfa_ms.p50", "ttfa_ms.p95", "asr.rtf", "asr.wer", "llm.ttft_ms", "llm.tok_s", "tts.first_chunk_ms",
        "rss_mb", "idle_cpu_pct", "ready_s", "wh_per_turn"]


def _get(figures: dict, dotted: str):
    value = figures
    for part in dotted.split("."):
        value = value[part]
    return value


def test_references_come_from_the_recordings_readme_and_long_recordings_are_cut_at_pauses():
    refs = recording_references()  # the recordings the project carries
    assert refs == recording_references(RECORDINGS)
    assert refs["jfk.flac"].startswith("And so my fellow Americans")
    assert refs["stereo_diarization.wav#right"] == "The horizon seems extremely distant."
    assert refs["hotwords.mp3"] is None  # no full transcript given: timed, not scored
    import numpy as np

    audio = np.zeros(16000 * 20, np.float32)
    cut = pieces(audio, [(0.5, 2.0), (3.0, 11.0), (12.0, 19.5)])  # over 15 s: cut at a pause, never over 12 s
    assert len(cut) == 2 and all(p.size <= 16000 * 12 for p, _ in cut)
    assert [spans for _, spans in cut] == [[(0.2, 1.7), (2.7, 10.7)], [(0.2, 7.7)]]


@pytest.mark.real_model
def test_bench_reports_every_figure_and_a_timeline_plot(real_cache, tmp_path):
    plot = tmp_path / "timeline.png"
    proc = subprocess.run([sys.executable, "-m", "companion", "bench", "--limit", "4", "--json", "--plot", str(plot),
                           "--no-llm-alone"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout)
    for key in KEYS:
        if key == "llm.tok_s":  # --no-llm-alone: the isolated figure is skipped, the loop's is there
            assert _get(figures, "llm.tok_s_in_loop") > 5
            continue
        assert isinstance(_get(figures, key), (int, float)), key
    assert figures["turns_answered"] >= 3 and figures["utterances"] == 4
    assert 0 < figures["ttfa_ms"]["p50"] <= figures["ttfa_ms"]["p95"] < 10_000
    # The stages happen in order, and no reply audio before the end of speech was confirmed.
    trace = figures["example_turn"]["trace"]
    assert trace["asr_start"] < trace["asr_end"] <= trace["first_token"] <= trace["tts_end"] <= trace["first_audio"]
    assert trace["end_confirmed"] <= trace["first_audio"]
    assert 0 <= figures["asr"]["wer"] <= 0.5  # generated speech of the robot's own voice is heard well
    assert figures["cost"]["api_usd_per_turn"] == 0 and figures["cost"]["cloud_usd_per_turn"] > 0
    assert 0 < figures["ready_s"] < 120 and 0 <= figures["idle_cpu_pct"] < 200
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


@pytest.mark.real_model
def test_bench_knowledge_reports_retrieval_time(real_cache):
    import json as _json
    import subprocess as _sp
    import sys as _sys

    proc = _sp.run([_sys.executable, "-m", "companion", "bench", "knowledge", "--json"], capture_output=True,
                   text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    figures = _json.loads(proc.stdout)
    assert figures["cards"] >= 1500 and figures["calls"] == 70
    assert 0 < figures["retrieval_ms_median"] <= figures["retrieval_ms_max"]
    assert 0.5 <= figures["questions_with_a_card"] < 1.0  # chit-chat finds no card
    # Misheard words are respelt and looked up again: every one finds its card, at the cost of a second encode.
    assert figures["misheard_with_a_card"] == 1.0 and figures["misheard_ms_median"] > 0


def test_the_example_turn_is_the_median_of_the_turns_the_model_answered():
    """A turn answered with a fixed line (a safety redirect: no first token) has no model stage to plot; the
    example is the median of the model's turns (it was the median of all, and the trace then had no tokens)."""
    from types import SimpleNamespace

    from companion.bench.loop import _example

    def turn(heard, ttfa, first_token):
        return SimpleNamespace(heard=heard, reply="...", timings=SimpleNamespace(
            ttfa_ms=ttfa, trace={"asr_start": 1.0, "first_token": first_token}))

    timed = [turn("fixed", 700.0, None), turn("a", 400.0, 300.0), turn("b", 900.0, 600.0), turn("c", 500.0, 400.0)]
    # Of all four the median (400, 500, 700, 900 -> index 2) is the fixed line; of the model's three, c.
    assert _example(timed)["heard"] == "c"
    assert _example([turn("fixed", 500.0, None)])["heard"] == "fixed"
    assert _example([]) is None
