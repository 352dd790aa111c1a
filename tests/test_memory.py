"""The memory store: durability under kill -9, erase leaves no trace, retention, isolation, migrations."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from companion.memory.facts import extract_facts
from companion.memory.store import DB_NAME, SCHEMA_VERSION, MemoryError_, MemoryStore


@pytest.fixture()
def store(tmp_path):
    s = MemoryStore(tmp_path)
    yield s
    s.close()


def test_database_is_wal_full_sync_and_versioned(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version == SCHEMA_VERSION


def test_turns_facts_and_search_are_per_child(store):
    s1 = store.start_session("ana")
    t1 = store.add_turn(s1, "ana", "I love strawberries and my dog Rex", "Yum!")
    store.add_fact("ana", "likes", "strawberries", t1)
    s2 = store.start_session("ben")
    store.add_turn(s2, "ben", "I like trains", "Choo choo!")
    assert [t.heard for t in store.recent_turns("ana", 5)] == ["I love strawberries and my dog Rex"]
    assert [f.value for f in store.facts("ben")] == []
    assert [t.id for t in store.search_turns("ana", "do you remember my strawberries")] == [t1]
    assert store.search_turns("ben", "strawberries") == []
    store.add_fact("ana", "name", "Ana", t1)
    store.add_fact("ana", "name", "Anna", t1)  # single-valued: the newer replaces the older
    assert [f.value for f in store.facts("ana") if f.kind == "name"] == ["Anna"]


def test_erase_leaves_no_trace_in_the_database_files(tmp_path):
    store = MemoryStore(tmp_path)
    secret_words = ["Zebracorn", "Biscuitopolis", "Quokkaberry"]
    s = store.start_session("zoe")
    for i in range(50):
        t = store.add_turn(s, "zoe", f"My dog is called {secret_words[i % 3]} number {i}", f"Hello {secret_words[0]}!")
        store.add_fact("zoe", "pet", f"dog {secret_words[1]}", t)
    store.add_alert("zoe", "disclosure", f"{secret_words[2]} said something")
    keep = store.start_session("max")
    store.add_turn(keep, "max", "I like Lighthouses", "Me too!")
    assert store.erase_child("zoe")
    files = [p for p in tmp_path.iterdir() if p.name.startswith(DB_NAME)]
    assert files
    blob = b"".join(p.read_bytes() for p in files).lower()
    for word in secret_words:
        assert word.lower().encode() not in blob, word
    assert b"lighthouses" in blob  # the other child is untouched
    assert store.integrity_ok()
    store.erase_all()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(DB_NAME)).lower()
    assert b"lighthouses" not in blob
    store.close()


def test_retention_deletes_old_transcripts_but_keeps_facts(store):
    s = store.start_session("leo")
    t = store.add_turn(s, "leo", "My favourite animal is the octopus", "Cool!")
    store.add_fact("leo", "favourite_animal", "octopus", t)
    assert store.purge_expired(30, now=time.time() + 31 * 86400) == 1
    assert store.recent_turns("leo", 5) == []
    assert [f.value for f in store.facts("leo")] == ["octopus"]
    assert store.facts("leo")[0].source_turn_id is None


def test_a_newer_schema_or_a_corrupt_file_is_refused_with_a_code(tmp_path):
    MemoryStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(MemoryError_) as info:
        MemoryStore(tmp_path)
    assert info.value.code == "MEMORY_SCHEMA_TOO_NEW"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(MemoryError_) as info:
        MemoryStore(bad)
    assert info.value.code == "MEMORY_DB_CORRUPT"


WRITER = """
import sys
from pathlib import Path
from companion.memory.store import MemoryStore
store = MemoryStore(Path(sys.argv[1]))
session = store.start_session("kid")
i = 0
while True:
    turn = store.add_turn(session, "kid", f"utterance {sys.argv[2]}-{i}", "reply " * 20)
    store.add_fact("kid", "likes", f"thing {i % 7}", turn)
    print(turn, flush=True)
    i += 1
"""


def test_kill_minus_nine_never_loses_an_acknowledged_turn(tmp_path):
    rng = random.Random(1234)
    acked: list[int] = []
    iterations = int(os.environ.get("COMPANION_KILL_ITERATIONS", "200"))
    for it in range(iterations):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(it)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the writer is up and has acknowledged a turn
        time.sleep(rng.uniform(0, 0.04))
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait()
        acked += [int(x) for x in (first + rest).split()]
    store = MemoryStore(tmp_path)
    assert store.integrity_ok()
    stored = {row[0] for row in store._db.execute("SELECT id FROM turns")}
    missing = [t for t in acked if t not in stored]
    assert not missing, f"{len(missing)} acknowledged turns lost"
    assert len(acked) >= iterations
    store.close()


@pytest.mark.parametrize("text,expected", [
    ("Hi! My name is Maya and I am six.", {("name", "Maya"), ("age", "6")}),
    ("My favourite animal is the octopus.", {("favourite_animal", "octopus")}),
    ("My dog is called Biscuit.", {("pet", "dog Biscuit")}),
    ("I have a cat named tom", {("pet", "cat Tom")}),
    ("I'm scared of the dark.", {("fears", "the dark")}),
    ("my best friend is sam", {("friend", "Sam")}),
    ("I love strawberries.", {("likes", "strawberries")}),
    ("I am sad today.", set()),
    ("I'm so happy!", set()),
    ("Why is the sky blue?", set()),
])
def test_fact_rules(text, expected):
    assert {(f.kind, f.value) for f in extract_facts(text)} == expected


def test_a_question_about_an_untold_fact_is_answered_honestly_not_invented():
    from companion.memory.answers import answer_from_facts

    assert answer_from_facts("what is my favourite food", []) == \
        "You haven't told me your favourite food yet. What is it?"
    assert "haven't told me" in answer_from_facts("whats my dogs name", [])
    assert "haven't told me" in answer_from_facts("how old am i", [])
    assert "favourite toy" in answer_from_facts("what is my favourite toy?", [])
    for telling in ("i know my name is long", "my favourite food is pizza", "why is the sky blue"):
        assert answer_from_facts(telling, []) is None


def test_personal_questions_the_robot_was_never_told_get_no_guess():
    from companion.memory.answers import answer_from_facts

    for question, thing in (("whats my favourite colour", "favourite colour"), ("when is my birthday", "birthday"),
                            ("What's my teacher called?", "teacher's name"), ("whats my middle name", "middle name"),
                            ("whats my little sisters name", "little sister's name"),
                            ("what colour is my hair", "hair colour")):
        reply = answer_from_facts(question, [])
        assert reply is not None and "haven't told me" in reply and thing in reply, (question, reply)
    assert answer_from_facts("my sister is called amy", []) is None


def test_questions_about_the_childs_likes_and_age_to_come_are_not_guessed():
    from companion.memory.answers import answer_from_facts
    from companion.memory.store import Fact

    assert answer_from_facts("what football team do i like", []) == \
        "You haven't told me which football team you like yet. Which one is it?"
    assert "haven't told me how old" in answer_from_facts("how old will i be on my birthday", [])
    age = Fact("age", "6", None, 0.0)
    assert answer_from_facts("how old will i be on my birthday", [age]).endswith("you will be 7!")
    assert answer_from_facts("how old am i", [age]) == "You told me you are 6 years old!"
    assert answer_from_facts("how many brothers have i got", []) == \
        "You haven't told me about your brothers yet. Will you tell me?"
    sister = Fact("family", "sister Amy", None, 0.0)
    assert answer_from_facts("do i have a sister?", [sister]) == "You told me about your sister Amy! Is there anyone else?"


ASKS_ABOUT_THEMSELVES = [  # the way children ask; none of these lines is in an evaluation set
    "whats my teachers name", "who is my teacher this year", "do you know my mommys name", "what is my grandmas name",
    "whats my nanas name", "what's my brother called", "what is my uncles name", "do you remember my dads name",
    "whats my doggys name", "what is my teddys name", "what grade am i in", "whats my last name",
    "can you guess my name", "what am i called", "whats my cousins name", "who's my best friend",
    # General shapes (memory/answers.py ``_ABOUT_ME``), written for this test.
    "whats my cats favourite toy", "where did i go on holiday", "what do i want for christmas",
    "how many cousins have i got", "do you remember what i had for lunch", "what did i have for breakfast",
    "how tall am i", "what colour is my bike", "whats my grandads dogs name", "what is my mums job",
    "when is my mums birthday", "what sport do i play", "hey pip whats my shoe size",
]
NOT_ABOUT_WHAT_THEY_TOLD = [  # questions about bodies, the world, or a worried child: the model (or safety) answers
    "where is my mum", "why do my ears pop", "how many teeth do i have", "what is my tooth made of",
    "where does my food go", "where do i come from", "what does my mum do at work", "my teacher is called mrs patel",
    "what should i call my new puppy", "what is my heart for", "why does my tummy rumble", "when will my tooth fall out",
    "who made my toys", "where is my bike", "how does my brain work", "what do you call my mums mum",
    "what does my heart do", "why is my poo brown", "what are my bones made of", "what do i need to make a kite",
    "what is my shadow", "what can i do when im bored", "do you know why my tummy rumbles", "where is my liver",
    "i hate when my sister takes my stuff", "what do i wear when its cold", "what did i learn about dinosaurs",
]


@pytest.mark.parametrize("question", ASKS_ABOUT_THEMSELVES)
def test_a_child_asking_about_themselves_is_never_given_a_made_up_answer(question):
    from companion.memory.answers import answer_from_facts
    from companion.eval.quality import invented_claim

    reply = answer_from_facts(question, [])
    assert reply is not None and "haven't told me" in reply and invented_claim(reply) is None, reply


@pytest.mark.parametrize("question", NOT_ABOUT_WHAT_THEY_TOLD)
def test_questions_about_bodies_and_the_world_go_to_the_model(question):
    from companion.memory.answers import answer_from_facts

    assert answer_from_facts(question, []) is None


def test_no_question_the_cards_answer_and_no_fact_or_social_dev_line_is_taken_for_one_about_the_child():
    """The general shapes (``_ABOUT_ME``) must leave every fact question to the cards and the model: all the
    cards' questions, the retrieval probes and the dev set's fact and social lines (~8,200)."""
    import json

    from companion.knowledge.cards import cards_dir, load_cards
    from companion.memory.answers import answer_from_facts

    lines = [q for c in load_cards() for q in c.questions]
    lines += [json.loads(x)["q"] for x in (cards_dir() / "probes.jsonl").read_text().splitlines() if x.strip()]
    dev = Path(__file__).resolve().parents[1] / "companion" / "data" / "eval" / "quality_dev.jsonl"
    lines += [r["text"] for r in map(json.loads, dev.read_text().splitlines()) if r["kind"] in ("fact", "social")]
    assert len(lines) > 8000
    # Two card questions are truly about the child too, and memory's answer is the right one for a child who
    # never said: "who is my uncle" (their uncle's name) and "how old will i be on my birthday".
    mine = {"who is my uncle", "how old will i be on my birthday"}
    taken = [q for q in lines if q not in mine and "haven't told me" in (answer_from_facts(q, []) or "")]
    assert not taken, taken[:10]


def test_a_familys_passwords_codes_and_cards_are_never_asked_for():
    from companion.memory.answers import answer_from_facts

    for question in ("whats my dads password", "what is my mums pin number", "whats my grandmas credit card number"):
        reply = answer_from_facts(question, [])
        assert reply is not None and "private" in reply and "tell me" not in reply.lower(), (question, reply)


def test_where_a_child_lives_or_goes_to_school_is_not_asked_for():
    from companion.memory.answers import answer_from_facts

    for question in ("where do i live", "do you know where i live", "whats my address", "what school do i go to",
                     "where do i go to school", "what street do i live on"):
        reply = answer_from_facts(question, [])
        assert reply is not None and reply.startswith("I don't know") and "trust" in reply, (question, reply)
        assert "tell me" not in reply.lower() and "what is it" not in reply.lower()


def test_a_name_the_child_told_is_found_by_the_word_they_ask_with():
    from companion.memory.answers import answer_from_facts
    from companion.memory.store import Fact

    facts = [Fact("family", "sister Amy", None, 0.0), Fact("family", "mom Sarah", None, 0.0),
             Fact("friend", "Sam", None, 0.0)]
    assert answer_from_facts("whats my little sisters name", facts) == "Your little sister is called Amy!"
    assert answer_from_facts("do you know my mummys name", facts) == "Your mummy is called Sarah!"
    assert answer_from_facts("who's my best friend", facts) == "Your best friend is called Sam!"
    assert "haven't told me your brother's name" in answer_from_facts("what's my brother called", facts)
