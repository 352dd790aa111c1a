"""``companion bench safety``: what the safety classifier costs: a check's time and the memory it adds."""

from __future__ import annotations

import statistics
import time

from companion.bench.knowledge import QUESTIONS

#: Replies the robot might say (output checks run per clause and on the reply so far).
REPLIES = (
    "A spider has eight legs, and that is why it is not an insect.",
    "I'm sorry you feel sad. It's okay to feel that way, and a grown-up you love can help.",
    "Rain comes from clouds: tiny drops join up until they are heavy enough to fall.",
    "Let's play a game! I spy with my little eye something that is blue.",
)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run(load, *, runs: int = 5, before_load=None) -> dict:
    """``load()`` returns the classifier; its RSS growth is measured around that call, after
    ``before_load()`` (what the robot has loaded anyway: onnxruntime and the sentence encoder)."""
    kept = before_load() if before_load is not None else None  # noqa: F841 - held while measuring
    before = _rss_mb()
    started = time.perf_counter()
    classifier = load()
    load_s = time.perf_counter() - started
    classifier.classify_input("warm up")
    after = _rss_mb()
    inputs, outputs = [], []
    for _ in range(runs):
        for text in QUESTIONS:
            t = time.perf_counter()
            classifier.classify_input(text)
            inputs.append((time.perf_counter() - t) * 1000)
        for text in REPLIES:
            t = time.perf_counter()
            classifier.unsafe_output(text)
            outputs.append((time.perf_counter() - t) * 1000)
    inputs.sort()
    outputs.sort()
    return {"input_ms_median": round(statistics.median(inputs), 2),
            "input_ms_p95": round(inputs[int(0.95 * (len(inputs) - 1))], 2),
            "output_ms_median": round(statistics.median(outputs), 2),
            "output_ms_p95": round(outputs[int(0.95 * (len(outputs) - 1))], 2),
            "rss_growth_mb": round(after - before, 1), "load_s": round(load_s, 2), "calls": len(inputs) + len(outputs)}
