"""``companion bench knowledge``: fact-card retrieval time (encode the child's words + index lookup)."""

from __future__ import annotations

import statistics
import time

from companion.knowledge.index import Knowledge

#: What children ask, the way Whisper writes it; not lines of any evaluation set.
QUESTIONS = (
    "how many legs does a spider have", "what is the closest star", "whats the tallest animal",
    "why do cats purr", "i scored a goal at football today", "how do airplanes fly", "can we play a game",
    "why is the sky blue", "what do cows eat", "how many months are in a year", "where does rain come from",
    "why do we have to sleep", "what do bees make", "my tooth is wobbly",
)


def run(knowledge: Knowledge, *, runs: int = 5) -> dict:
    times, found = [], 0
    knowledge.find("warm up")
    for _ in range(runs):
        for question in QUESTIONS:
            t = time.perf_counter()
            cards = knowledge.find(question)
            times.append((time.perf_counter() - t) * 1000)
            found += bool(cards)
    times.sort()
    return {"cards": len(knowledge.index.cards), "rows": int(knowledge.index.card_of.shape[0]),
            "retrieval_ms_median": round(statistics.median(times), 2),
            "retrieval_ms_p95": round(times[int(0.95 * (len(times) - 1))], 2), "retrieval_ms_max": round(times[-1], 2),
            "questions_with_a_card": round(found / len(times), 2), "calls": len(times)}
