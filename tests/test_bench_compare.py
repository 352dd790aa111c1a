"""``companion bench compare``: a change told from run-to-run noise, utterance by utterance."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from companion.bench.compare import compare, median_interval


def _run(ttfa: list[float], asr: list[float]) -> dict:
    turns = [{"kind": "generated", "utterance": f"line {i}", "ttfa_ms": t,
              "trace": {"asr_start": 100.0, "asr_end": 100.0 + a, "end_confirmed": 250.0, "first_token": 600.0}}
             for i, (t, a) in enumerate(zip(ttfa, asr))]
    turns.append({"kind": "generated", "utterance": "line 0", "ttfa_ms": 99_999.0, "trace": {}})  # a cut-in's 2nd turn
    turns.append({"kind": "record", "utterance": "hotwords", "ttfa_ms": None, "trace": {}})  # nothing said
    return {"per_turn": turns, "ttfa_ms": {"p50": float(np.median(ttfa)), "p95": float(np.percentile(ttfa, 95))}}


def test_the_same_code_twice_is_noise_and_a_slower_stage_is_a_change():
    rng = np.random.default_rng(1)
    base = rng.uniform(700, 2500, 50)
    noise = rng.normal(0, 150, 50)  # two runs of the same code: each utterance moves, nothing in common
    same = compare(_run(list(base), [200.0] * 50), _run(list(base + noise), [200.0] * 50))
    assert same["ttfa"]["pairs"] == 50 and same["ttfa"]["within_noise"]
    low, high = same["ttfa"]["ci95_ms"]
    assert low < 0 < high
    # Every utterance 80 ms later (plus the same noise), because the ASR takes 80 ms more: a change.
    slower = compare(_run(list(base), [200.0] * 50), _run(list(base + noise + 80), [280.0] * 50))
    assert not slower["ttfa"]["within_noise"] and slower["ttfa"]["ci95_ms"][0] > 0
    assert slower["stages"]["asr"]["median_diff_ms"] == 80.0 and not slower["stages"]["asr"]["within_noise"]
    assert slower["stages"]["end_confirmed"]["median_diff_ms"] == 0.0


def test_the_interval_of_the_median_holds_the_median():
    diffs = np.array([-30.0, 10, 20, 25, 40, 55, 60, 80, 120, 300])
    low, high = median_interval(diffs)
    assert low <= float(np.median(diffs)) <= high and low >= -30 and high <= 300
    assert median_interval(diffs) == median_interval(diffs)  # seeded: two reports agree


def test_runs_of_different_utterances_are_refused(tmp_path):
    with pytest.raises(ValueError, match="same utterance set"):
        compare(_run([1000.0] * 3, [200.0] * 3), _run([1000.0] * 3, [200.0] * 3))
    good = tmp_path / "a.json"
    good.write_text(json.dumps(_run([1000.0] * 8, [200.0] * 8)))
    bad = tmp_path / "b.json"
    bad.write_text("{ not json")
    proc = subprocess.run([sys.executable, "-m", "companion", "bench", "compare", str(good), str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "BENCH_INPUT_INVALID" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "companion", "bench", "compare", str(good), str(good), "--json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["ttfa"]["median_diff_ms"] == 0.0
