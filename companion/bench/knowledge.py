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
#: Questions with a word Whisper spelt as it sounds: no card at first, found on the respelt second lookup
#: (``knowledge/respell.py``), which costs a second encode.
MISHEARD = ("what does a catapiller turn into", "whats a tornardo", "what does your hart do")


def _timed(knowledge: Knowledge, questions: tuple[str, ...], runs: int) -> tuple[list[float], int]:
    times, found = [], 0
    for _ in range(runs):
        for question in questions:
            t = time.perf_counter()
            cards = knowledge.find(question)
            times.append((time.perf_counter() - t) * 1000)
            found += bool(cards)
    return sorted(times), found


def run(knowledge: Knowledge, *, runs: int = 5) -> dict:
    knowledge.find("warm up")
    times, found = _timed(knowledge, QUESTIONS, runs)
    misheard, respelt = _timed(knowledge, MISHEARD, runs)
    return {"cards": len(knowledge.index.cards), "rows": int(knowledge.index.card_of.shape[0]),
            "retrieval_ms_median": round(statistics.median(times), 2),
            "retrieval_ms_p95": round(times[int(0.95 * (len(times) - 1))], 2), "retrieval_ms_max": round(times[-1], 2),
            "questions_with_a_card": round(found / len(times), 2), "calls": len(times),
            "misheard_ms_median": round(statistics.median(misheard), 2),
            "misheard_with_a_card": round(respelt / len(misheard), 2)}
