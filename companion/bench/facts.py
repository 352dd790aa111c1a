"""``companion bench facts``: rules vs the language model (JSON schema) at extracting facts."""

from __future__ import annotations

import json
import time
from importlib import resources

from companion.llm.generate import Generator
from companion.memory.facts import extract_facts
from companion.memory.llm_facts import extract_with_model


def _norm(facts) -> set[tuple[str, str]]:
    return {(f.kind, " ".join(f.value.lower().replace("the ", "").split())) for f in facts}


def _gold(pairs) -> set[tuple[str, str]]:
    return {(k, " ".join(v.lower().replace("the ", "").split())) for k, v in pairs}


def run(generator: Generator) -> dict:
    rows = [json.loads(line) for line in
            resources.files("companion.bench").joinpath("data/facts.jsonl").read_text().splitlines() if line.strip()]
    report = {}
    for name, fn in (("rules", extract_facts), ("model", lambda t: extract_with_model(generator, t))):
        exact = tp = fp = fn_ = 0
        started = time.perf_counter()
        misses = []
        for row in rows:
            got, want = _norm(fn(row["text"])), _gold(row["facts"])
            exact += got == want
            tp += len(got & want)
            fp += len(got - want)
            fn_ += len(want - got)
            if got != want:
                misses.append({"text": row["text"], "got": sorted(got), "want": sorted(want)})
        ms = (time.perf_counter() - started) * 1000 / len(rows)
        report[name] = {"exact": round(exact / len(rows), 3), "precision": round(tp / max(1, tp + fp), 3),
                        "recall": round(tp / max(1, tp + fn_), 3), "ms_per_utterance": round(ms, 2),
                        "misses": misses}
    report["sentences"] = len(rows)
    return report
