"""Nothing blocks the audio loop: a parent erasing a child (which ends in a VACUUM of a large database)
while the robot is speaking does not delay the next audio block by more than one block.

How late the loop runs is measured by a task that sleeps 5 ms at a time and records how much
later than asked it wakes: a block is handed to the speaker by the same loop, so a stall of the
loop is a block handed late by as much. Real time here (the VACUUM is real work on a real file);
the stages are the fakes of
companion/voice/testing.py, the dashboard is the real app on the loop's own memory worker,
driven in the same event loop as the voice loop (as under ``companion run --parent-port``).
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx2
import pytest

from companion.audio.sinks import BLOCK_S, SimulatedSpeaker
from companion.audio.sources import Segment, SimulatedMicrophone
from companion.config import CompanionConfig
from companion.llm.sampling import SamplingParams
from companion.memory.store import MemoryStore
from companion.memory.worker import MemoryWorker
from companion.parent import auth
from companion.parent.app import create_app
from companion.vad.endpoint import Endpointer
from companion.voice.events import ClauseSpoken, TurnCompleted
from companion.voice.loop import VoiceLoop
from companion.voice.testing import EnergyVAD, ScriptedBrain, ScriptedModel, ToneTranscriber, ToneVoice, tone

PASSWORD = "a long parent password"
STORY = " ".join(f"Sentence number {i} of a long story about a kind dragon and a brave little mouse." for i in range(12))


def _big_database(tmp_path, mb: int = 60) -> MemoryStore:
    """A child with ~``mb`` MB of transcripts (years of daily talk, in text), then the parents' password."""
    store = MemoryStore(tmp_path)
    session = store.start_session("other")
    cid = store.child_id("other")
    text = "the quick brown fox jumps over the lazy dog and then tells a story " * 30
    rows = [(session, cid, time.time(), f"{i} {text}", text) for i in range(mb * 1024 * 1024 // (2 * len(text)))]
    with store._lock:
        store._db.execute("BEGIN")
        store._db.executemany("INSERT INTO turns(session_id, child_id, at, heard, said) VALUES (?,?,?,?,?)", rows)
        store._db.execute("COMMIT")
    auth.set_password(store, PASSWORD)
    return store


async def _watch(stalls: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """(when, how much later than asked the loop woke) every 5 ms."""
    aio = asyncio.get_running_loop()
    while not stop.is_set():
        asked = aio.time() + 0.005
        await asyncio.sleep(0.005)
        stalls.append((asked, aio.time() - asked))


async def _logged_in(client: httpx2.AsyncClient) -> str:
    page = await client.get("/login")
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    done = await client.post("/login", data={"csrf": login_csrf, "password": PASSWORD})
    assert done.status_code == 303, done.text
    page = await client.get("/children/other/memory")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_an_erase_with_vacuum_during_a_reply_does_not_delay_playback(tmp_path):
    store = _big_database(tmp_path)
    worker = MemoryWorker(store)
    app = create_app(worker, CompanionConfig())
    stalls: list[tuple[float, float]] = []
    played: list[float] = []
    erase: dict[str, float] = {}

    async def scenario() -> list:
        aio = asyncio.get_running_loop()
        tts = ToneVoice()
        player = SimulatedSpeaker(tts.rate, on_block=lambda b: played.append(aio.time()))
        events: list = []
        stop = asyncio.Event()
        watcher = aio.create_task(_watch(stalls, stop))
        client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://robot",
                                    follow_redirects=False)
        csrf = await _logged_in(client)

        async def parent_erases() -> None:
            erase["start"] = aio.time()
            answer = await client.post("/children/other/erase", data={"csrf": csrf, "confirm": "other"})
            erase["end"] = aio.time()
            assert answer.status_code == 200 and "erased" in answer.text

        def on_event(event) -> None:
            events.append(event)
            if isinstance(event, ClauseSpoken) and "start" not in erase:
                erase["task"] = aio.create_task(parent_erases())

        loop = VoiceLoop(endpointer=Endpointer(EnergyVAD()), asr=ToneTranscriber({300.0: "Tell me a story."}),
                         brain=ScriptedBrain(max_words=200), model=ScriptedModel({}, default=STORY),
                         sampling=SamplingParams(), tts=tts, player=player, on_event=on_event)
        mic = SimulatedMicrophone([Segment(tone(300, 1.0))], idle=loop.is_idle, player=player)
        await loop.run(mic.frames())
        await erase["task"]
        stop.set()
        await watcher
        await player.close()
        await client.aclose()
        return events

    events = asyncio.run(scenario())
    assert [e for e in events if isinstance(e, TurnCompleted)]
    during = [late for t, late in stalls if erase["start"] <= t <= erase["end"]]
    assert erase["end"] - erase["start"] > 0.2, erase  # the erase took real time (a large VACUUM)...
    assert during and played[0] < erase["start"] and played[-1] > erase["end"]  # ...while the robot spoke
    print(f"erase {erase['end'] - erase['start']:.2f} s, worst stall {max(during) * 1000:.1f} ms")
    assert max(during) <= BLOCK_S, f"the loop stalled {max(during) * 1000:.0f} ms during the erase"
    assert store.count_turns("other") == 0
    worker.close()
    store.close()


def test_the_same_vacuum_on_the_loop_would_delay_it(tmp_path):
    """The control: the database is large enough that a VACUUM run on the event loop itself would make
    playback late by far more than a block (what the test above would catch)."""
    store = _big_database(tmp_path)

    async def scenario() -> float:
        stalls: list[tuple[float, float]] = []
        stop = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch(stalls, stop))
        await asyncio.sleep(0.1)
        store.erase_child("other")  # on the loop: what the dashboard did before it had the worker
        await asyncio.sleep(0.1)
        stop.set()
        await watcher
        return max(late for _, late in stalls)

    worst = asyncio.run(scenario())
    store.close()
    print(f"on the loop: worst stall {worst * 1000:.0f} ms")
    assert worst > 10 * BLOCK_S, worst


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
