"""``companion bench memory``: prompt assembly time with a long memory (10,000 turns for one child)."""

from __future__ import annotations

import asyncio

import statistics
import tempfile
import time
from pathlib import Path

from companion.brain.conversation import Conversation
from companion.config import CompanionConfig
from companion.llm.generate import Generator
from companion.memory.store import MemoryStore

TOPICS = ["dinosaurs", "the moon", "my dog Rex", "strawberries", "football", "my sister Ana", "rainbows", "trains"]


def run(config: CompanionConfig, generator: Generator, *, turns: int = 10_000, runs: int = 50) -> dict:
    with tempfile.TemporaryDirectory(prefix="companion-bench-") as tmp:
        store = MemoryStore(Path(tmp))
        t0 = time.perf_counter()
        session = store.start_session("kid")
        rows = [(session, store.child_id("kid"), time.time() - (turns - i), f"I want to talk about {TOPICS[i % 8]} {i}",
                 f"Let's talk about {TOPICS[(i + 3) % 8]}, number {i}!") for i in range(turns)]
        with store._lock:
            store._db.execute("BEGIN")
            store._db.executemany("INSERT INTO turns(session_id, child_id, at, heard, said) VALUES (?,?,?,?,?)", rows)
            store._db.execute("COMMIT")
        for i in range(40):
            store.add_fact("kid", "likes", f"thing number {i}", None)
        fill_s = time.perf_counter() - t0
        async def plans() -> tuple[list[float], list[int]]:
            conversation = Conversation(generator, config, "kid", store)
            await conversation.start()
            times, lengths = [], []
            for i in range(runs):
                heard = f"Do you remember when we talked about {TOPICS[i % 8]}?"
                t = time.perf_counter()
                plan = await conversation.plan(heard)  # the memory snapshot + the prompt, as a turn does
                times.append((time.perf_counter() - t) * 1000)
                lengths.append(len(plan.prompt))
            await conversation.close()
            return times, lengths

        times, lengths = asyncio.run(plans())
        store.close()
    return {"turns": turns, "fill_s": round(fill_s, 2), "assemble_ms_median": round(statistics.median(times), 2),
            "assemble_ms_max": round(max(times), 2), "prompt_tokens_max": max(lengths),
            "prompt_budget": config.memory.prompt_tokens}
