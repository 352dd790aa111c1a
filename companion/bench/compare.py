"""``companion bench compare BEFORE.json AFTER.json``: did a change move first audio, or is it noise?

Two runs of ``companion bench --json`` on the same utterances are compared utterance by utterance: the
difference of each utterance's first-audio time, the median of those differences and a bootstrap 95 %
interval for it. Two runs of the *same* code on this machine differ by up to ~100 ms in p50: the end of
a turn and the prefix cache's hits vary from run to run, and one slow turn moves a percentile. A
change whose interval holds 0 has not been shown to move first audio; one whose interval is above 0
costs at least its lower bound.
"""

from __future__ import annotations

import numpy as np

#: Stages compared beside first audio: (name, trace key of the start, trace key of the end).
STAGES = (("asr", "asr_start", "asr_end"), ("end_confirmed", None, "end_confirmed"),
          ("first_token", None, "first_token"))


def _first_turns(figures: dict) -> dict[tuple[str, str], dict]:
    """The first answered turn of each utterance (a paused line the robot cut into has two)."""
    turns: dict[tuple[str, str], dict] = {}
    for turn in figures.get("per_turn") or []:
        if turn.get("ttfa_ms") is None:
            continue
        turns.setdefault((turn.get("kind", ""), turn["utterance"]), turn)
    return turns


def _stage_ms(turn: dict, start: str | None, end: str) -> float | None:
    trace = turn.get("trace") or {}
    if trace.get(end) is None or (start is not None and trace.get(start) is None):
        return None
    return float(trace[end]) - (float(trace[start]) if start is not None else 0.0)


def median_interval(diffs: np.ndarray, *, draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """A bootstrap 95 % interval of the median of ``diffs`` (resampled with replacement)."""
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(diffs, size=(draws, len(diffs)), replace=True), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def _paired(before: dict, after: dict, value) -> dict | None:
    a, b = _first_turns(before), _first_turns(after)
    pairs = [(value(a[k]), value(b[k])) for k in a if k in b]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if len(pairs) < 5:
        return None
    diffs = np.array([y - x for x, y in pairs], dtype=np.float64)
    low, high = median_interval(diffs)
    return {"pairs": len(pairs), "median_diff_ms": round(float(np.median(diffs)), 1),
            "ci95_ms": [round(low, 1), round(high, 1)], "mean_diff_ms": round(float(diffs.mean()), 1),
            "slower_share": round(float((diffs > 0).mean()), 3),
            "within_noise": bool(low <= 0.0 <= high)}


def compare(before: dict, after: dict) -> dict:
    """Figures for two ``companion bench --json`` outputs (``after`` minus ``before``)."""
    ttfa = _paired(before, after, lambda t: float(t["ttfa_ms"]))
    if ttfa is None:
        raise ValueError("fewer than 5 utterances answered in both runs: not the same utterance set?")
    stages = {name: _paired(before, after, lambda t, s=start, e=end: _stage_ms(t, s, e))
              for name, start, end in STAGES}
    return {"ttfa": ttfa, "stages": {k: v for k, v in stages.items() if v is not None},
            "p50_ms": [before["ttfa_ms"]["p50"], after["ttfa_ms"]["p50"]],
            "p95_ms": [before["ttfa_ms"]["p95"], after["ttfa_ms"]["p95"]]}


def format_report(figures: dict) -> str:
    t = figures["ttfa"]
    lines = [f"first audio, {t['pairs']} utterances paired: median change {t['median_diff_ms']:+.0f} ms "
             f"(95 % interval {t['ci95_ms'][0]:+.0f} .. {t['ci95_ms'][1]:+.0f}), slower in "
             f"{100 * t['slower_share']:.0f} % of them: "
             + ("within this machine's noise" if t["within_noise"] else "a real change"),
             f"p50 {figures['p50_ms'][0]:.0f} -> {figures['p50_ms'][1]:.0f} ms, "
             f"p95 {figures['p95_ms'][0]:.0f} -> {figures['p95_ms'][1]:.0f} ms"]
    for name, s in figures["stages"].items():
        lines.append(f"  {name:14s} median change {s['median_diff_ms']:+.0f} ms "
                     f"({s['ci95_ms'][0]:+.0f} .. {s['ci95_ms'][1]:+.0f})")
    return "\n".join(lines)
