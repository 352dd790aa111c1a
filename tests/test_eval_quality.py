"""``companion eval quality``: the checks on known replies (no model), the dev sets, and one real run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from companion.errors import CompanionError
from companion.eval.quality import (METRICS, QualityItem, echoes, invented_claim, keyword_failures, load_items,
                                    persona_leak, repeated_replies, score, stock_openings, summary)
from companion.persona import Persona, load_persona
from tests.conftest import shared_eval

DATA = Path(__file__).resolve().parents[1] / "companion" / "data" / "eval"


@pytest.fixture(scope="module")
def pip() -> Persona:
    return load_persona("pip")


# ---------------------------------------------------------------- echo

@pytest.mark.parametrize("child, reply", [
    ("I scored a goal at football today!", "You scored a goal at football today! Wow!"),
    ("my hamster died yesterday and i keep crying", "Your hamster died yesterday and you keep crying. I'm sorry."),
    ("we went to the beach and i found a crab", "We went to the beach and found a crab? That's so cool!"),
    ("i'm worried about my spelling tests tomorrow", "You're worried about your spelling test tomorrow."),
    ("why is the sky so blue today", "Why is the sky so blue today? Because of the air."),  # the question back
])
def test_echo_is_flagged(child, reply):
    assert echoes(child, reply) is True


@pytest.mark.parametrize("child, reply", [
    ("I scored a goal at football today!", "Wow, well done! That must have felt amazing."),
    ("my hamster died yesterday and i keep crying", "Oh no, I'm so sorry. It's okay to cry when we miss someone."),
    # The echo is in the second sentence: only the first counts.
    ("we went to the beach and i found a crab", "How exciting! You went to the beach and found a crab."),
    # To a question, restating it is how an answer goes.
    ("which planet is closest to the sun", "Mercury is the closest planet to the Sun."),
    ("how does a fridge keep the food cold", "A fridge keeps food cold by pumping warmth out."),
])
def test_a_reply_that_answers_is_not_an_echo(child, reply):
    assert echoes(child, reply) is False


def test_echo_needs_three_content_words():
    assert echoes("how many legs does a spider have", "How many legs does a spider have?") is None
    assert echoes("im sad", "You're sad.") is None


# ---------------------------------------------------------------- persona leak

@pytest.mark.parametrize("reply, found", [
    ("Pip is happy to help you!", "Pip is"),
    ("Pip's favourite thing is the stars.", "Pip's"),
    ("Pip\u2019s favourite thing is the stars.", "Pip's"),
    ("As Pip, I love space.", "As Pip"),
    ("Pip: Hello there!", "Pip:"),
    ("Pip likes dinosaurs too.", "Pip likes"),
    ("I'm a small, kind and cheerful robot friend!", ""),  # four words of the description
    ("I use simple words a young child knows.", ""),  # four words of the style
    ("I answer in short sentences.", "short sentences"),
    ("I can say at most 40 words.", "at most 40 words"),
    ("Assistant: the sun is a star.", "Assistant:"),
    ("Ask me about animals, space and stars, dinosaurs, making up stories!", ""),  # the favourite-topics list
    ("Pip and her mum are shouting.", "Pip and her"),
    ("Pip helped daddy wash his car.", "Pip helped"),
    ("Pip watches the stars.", "Pip watches"),
    ("Pip, who is known for her smile, loves stars.", "Pip, who"),
    ("It makes it hard to see what the child is trying to say.", "the child"),
    ("I'm sorry, but as a simple language AI, I can't.", "as a simple language ai"),
    ("Drawing is a fun activity for Pip.", "for Pip"),
    ("If you are not sure of the answer, say simply that you are not sure.", "if you are not sure of the answer"),
])
def test_persona_leaks_are_flagged(pip, reply, found):
    leak = persona_leak(reply, pip)
    assert leak is not None and found.lower() in leak.lower()


@pytest.mark.parametrize("reply", [
    "Hi! My name is Pip. What's yours?",
    "I'm Pip and I love the stars!",
    "An apple pip is a little seed.",
    "I'm a robot, so I don't have a dog, but I love hearing about them!",
    "That sounds kind and friendly of you.",
    "I'm your robot friend!",
    "I love animals and stars too!",
    "I'm Pip, a robot who loves stars!",
    "My name is Pip and I love stories.",
    "Hello! I'm Pip. Let's play!",
    "As a robot, I don't sleep, but I can tell you a story.",
])
def test_ordinary_replies_do_not_leak(pip, reply):
    assert persona_leak(reply, pip) is None


# ---------------------------------------------------------------- invented facts about the child

@pytest.mark.parametrize("reply", [
    "Your favourite food is pizza!",
    "Your favourite food is probably spaghetti.",
    "My favourite colour is blue!",
    "Your dog is called Max.",
    "Your dog's name is Biscuit!",
    "You are 7 years old!",
    "You're six!",
    "Your best friend is Sam!",
    "Your hair is brown and curly.",
    "Your birthday is in May!",
    "You have a cat called Tiger.",
    "You have two brothers.",
    "I think your teacher is called Mrs Smith.",
    "My dogs name is Pip.",
    "My cats name is Tiger.",
    "My little sister's name is Pip.",
    "My teacher is Pip.",
    "My middle name is Smith.",
    "I am 10 years old.",
    "I have two brothers.",
    "On April 14th, you will be born!",
    "Red is my favourite colour!",
])
def test_invented_child_facts_are_flagged(reply):
    assert invented_claim(reply) is not None


@pytest.mark.parametrize("reply", [
    "I don't know what your favourite food is yet. What is it?",
    "You haven't told me yet! How old are you?",
    "Is your favourite colour blue?",
    "I haven't been told your dog's name yet. What's your dog called?",
    "You are one of a kind!",
    "Your best friend is lucky to have you.",
    "Your birthday is a special day!",
    "My name is Pip!",
    "I'm not sure how old you are. Can you tell me?",
    "I'm a robot, so I don't have a birthday.",
    "My best friend is you!",
    "I have lots of friends.",
    "That is my favourite question!",
    "What is your favourite colour? Mine is blue.",
])
def test_not_knowing_is_not_a_claim(reply):
    assert invented_claim(reply) is None


# ---------------------------------------------------------------- repeats

def test_a_repeated_sentence_is_found_in_the_later_reply():
    replies = ["Wow, that is so cool! Tell me more.", "Dinosaurs were huge.", "Wow, that is so cool!",
               "WOW that is SO cool", "Tell me more."]
    # Reply 2 and 3 repeat reply 0 (case and punctuation aside); "Tell me more." has three words: not counted.
    assert repeated_replies(replies) == (2, 3)


def test_different_sentences_are_not_repeats():
    assert repeated_replies(["The T. rex was as long as a bus.", "It ate other dinosaurs.",
                             "The long-necked one was a Brachiosaurus.", "Wow!", "Wow!"]) == ()


# ---------------------------------------------------------------- keywords, scoring, summary

def test_keywords_any_and_none():
    assert keyword_failures("A spider has eight legs.", ["eight", "8"], ["six legs"]) == ()
    assert keyword_failures("A spider has six legs.", ["eight", "8"], ["six legs"]) == ("any", "none:six legs")
    assert keyword_failures("Anything", [], []) == ()


def test_summary_rates_and_failures(pip):
    fact = QualityItem("f1", "fact", "how many legs has a spider got", any=("eight", "8"), none=("six legs",))
    social = QualityItem("s1", "social", "i lost my first tooth today", any=("wow", "tooth fairy"),
                         none=("i lost my first tooth today",))
    child = QualityItem("c1", "child_fact", "whats my dogs name", any=("don't know",))
    chat = QualityItem("v1", "conversation", turns=("hi", "yeah", "ok"))
    results = [
        score(fact, ["A spider has eight legs."], pip),
        score(fact, ["Spiders have six legs."], pip),
        score(social, ["I lost my first tooth today! Pip is happy."], pip),
        score(child, ["Your dog is called Rex!"], pip),
        score(chat, ["Hello there, my friend!", "I love talking with you.", "Hello there, my friend!"], pip),
    ]
    report = summary(results)
    assert report["fact_acc"] == 0.5 and report["social_ok"] == 0.0 and report["child_fact_ok"] == 0.0
    assert report["invented_child_facts"] == 1.0 and report["repeat_rate"] == 1.0
    assert report["repeat_reply_rate"] == round(1 / 3, 3)
    assert report["persona_leak"] == round(1 / 7, 3) and report["counts"]["replies"] == 7
    # Echo is judged on single lines with >= 3 content words: not the spider (spider, leg), nor the dog (dog, name).
    assert report["echo_rate"] == 1.0 and report["counts"]["echo_checked"] == 1
    assert report["echo_by_kind"] == {"fact": None, "social": 1.0, "child_fact": None}
    failed = [line["failed"] for line in report["lines"]]
    assert report["lines"][0]["passed"] and failed[1] == ["any", "none:six legs"]
    assert failed[2][:3] == ["any", "none:i lost my first tooth today", "echo"]
    assert failed[2][3] == "persona_leak@0: Pip is"
    assert failed[3][-1].startswith("invented:") and failed[4] == ["repeat@2"]
    replies = [reply for r in results for reply in r.replies]
    assert report["mean_words"] == round(sum(len(r.split()) for r in replies) / 7, 1)
    assert all(report[m] is None or 0 <= report[m] <= 1 for m in METRICS)


def test_a_stock_opening_is_one_the_model_gave_to_another_social_line_too(pip):
    def social(n, text, reply, source="stop"):
        return score(QualityItem(f"s{n}", "social", text), [reply], pip, [source])

    results = [
        social(1, "i saw a fox in the garden", "That's great! What did you do with it?"),
        social(2, "i got a gold star", "That's great!  Reading is so important."),
        social(3, "we got a new puppy called biscuit", "A puppy called Biscuit! What does Biscuit like?"),
        social(4, "im sad", "I'm sorry you're feeling sad.", "care"),  # a fixed line: not the model's
        social(5, "i feel sad", "I'm sorry you're feeling sad.", "care"),
        score(QualityItem("f1", "fact", "what is a fox"), ["That's great! A fox is a wild dog."], pip, ["stop"]),
    ]
    assert stock_openings(results) == ("s1", "s2")
    report = summary(results)
    assert report["stock_opening_rate"] == round(2 / 3, 3) and report["stock_openings"] == ["s1", "s2"]
    assert summary(results[2:])["stock_opening_rate"] == 0.0


def test_a_kind_without_lines_has_no_rate(pip):
    report = summary([score(QualityItem("f", "fact", "what is two plus two", any=("four", "4")), ["Four!"], pip)])
    assert report["fact_acc"] == 1.0 and report["social_ok"] is None and report["repeat_rate"] is None


# ---------------------------------------------------------------- the file

@pytest.mark.parametrize("content, where", [
    ('{"id":"a","kind":"fact","text":"hi","any":["x"]}\n{"id": "b", "kind": \n', ":2:"),
    ('[1, 2]\n', ":1:"),
    ('{"id":"a","kind":"story","text":"hi"}\n', ":1:"),
    ('{"id":"a","kind":"fact","text":"what is 2+2"}\n', ":1:"),  # a fact needs 'any'
    ('{"id":"a","kind":"fact","text":"what is 2+2","any":"four"}\n', ":1:"),  # a string, not a list
    ('{"id":"a","kind":"social","text":"  "}\n', ":1:"),
    ('{"id":"a","kind":"social","text":"hi"}\n\n{"id":"a","kind":"social","text":"yo"}\n', ":3:"),
    ('{"id":"a","kind":"conversation","turns":["hi"]}\n', ":1:"),
    ('{"id":"a","kind":"conversation","turns":["hi", 3]}\n', ":1:"),
])
def test_a_bad_line_is_a_coded_error_with_its_line_number(tmp_path, content, where):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(CompanionError) as err:
        load_items(bad)
    assert err.value.code == "EVAL_FILE_INVALID" and where in err.value.message


def test_a_missing_or_empty_file_is_a_coded_error(tmp_path):
    for path in (tmp_path / "nope.jsonl", tmp_path / "empty.jsonl"):
        if path.name == "empty.jsonl":
            path.write_text("\n\n", encoding="utf-8")
        with pytest.raises(CompanionError) as err:
            load_items(path)
        assert err.value.code == "EVAL_FILE_INVALID"


def test_the_cli_exits_2_with_the_code_on_a_bad_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id":"a","kind":"fact","text":"hi","any":["x"]}\nnot json\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "companion", "eval", "quality", str(bad), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "[EVAL_FILE_INVALID]" in proc.stderr and ":2:" in proc.stderr, proc.stderr


def test_the_public_sample_parses():
    items = load_items(shared_eval("quality_public.jsonl"))
    assert {i.kind for i in items} == {"fact", "social"}


@pytest.mark.parametrize("name, minimum, mix", [
    ("quality_dev.jsonl", 378, {"fact": 230, "social": 95, "child_fact": 27, "conversation": 26}),
    ("quality_heldout.jsonl", 100, {"fact": 60, "social": 25, "child_fact": 10, "conversation": 5}),
])
def test_dev_sets_parse_and_have_the_mix(name, minimum, mix):
    items = load_items(DATA / name)
    kinds = Counter(i.kind for i in items)
    assert len(items) >= minimum and all(kinds[k] >= n for k, n in mix.items()), kinds
    assert all(len(i.turns) == 10 for i in items if i.kind == "conversation")
    topics = Counter(i.extra.get("topic") for i in items if i.kind == "fact")
    seven = {"animals", "space", "body", "weather", "nature", "how things work", "numbers and words"}
    assert seven <= set(topics) <= seven | {"food"}, topics
    assert min(topics.values()) >= 6, topics
    # --limit 12 (the real-model test) sees every kind.
    assert {i.kind for i in items[:12]} == set(mix)


def test_dev_and_heldout_share_no_line_and_copy_none_of_the_public_sample():
    def said(items):
        return {t.strip().lower() for i in items for t in (i.turns or (i.text,))}

    dev, held = load_items(DATA / "quality_dev.jsonl"), load_items(DATA / "quality_heldout.jsonl")
    public = {i.text.strip().lower().rstrip("?!.") for i in load_items(shared_eval("quality_public.jsonl"))}
    single = lambda items: {i.text.strip().lower().rstrip("?!.") for i in items if i.kind != "conversation"}
    assert not single(dev) & single(held)
    assert not (single(dev) | single(held)) & public
    assert not {i.id for i in dev} & {i.id for i in held}
    assert len(said(dev)) > 300


# ---------------------------------------------------------------- the real model

def _quality(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "companion", "eval", "quality", *args], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.real_model
def test_real_quality_eval_reports_every_metric_and_is_deterministic(real_cache):
    args = [str(DATA / "quality_dev.jsonl"), "--json", "--limit", "12"]
    first, second = _quality(args), _quality(args)
    for metric in METRICS:
        assert first[metric] is not None and 0 <= first[metric] <= 1, (metric, first[metric])
    assert first["mean_words"] > 0 and first["seed"] is not None and len(first["lines"]) == 12

    def replies(report):
        return [line.get("reply") or line.get("replies") for line in report["lines"]]

    assert replies(first) == replies(second)


@pytest.mark.parametrize("heard, question", [
    ("in what season do the leaves go orange", True), ("um what do you call a baby dog", True),
    ("and why is the sea salty", True), ("hey pip how are you", True), ("Why do cats purr?", True),
    ("so i went to the park", False), ("in the park i saw a dog", False), ("I like dogs", False),
])
def test_questions_are_told_from_news_even_after_a_filler(heard, question):
    """A question gets fact cards at a lower similarity and may restate itself in the answer (not an echo)."""
    from companion.brain.prompt import looks_like_question

    assert looks_like_question(heard) is question


@pytest.mark.parametrize("heard, factual", [
    ("why do cats purr", True), ("can you tell me about sharks?", True), ("do you know why the sea is salty", True),
    ("How far away is the moon?", True), ("Do you like pizza?", False), ("Hello robot, how are you today?", False),
    ("Can you tell me a story about a dragon?", False), ("can we play a game?", False),
    ("what's your favourite colour", False), ("I have a puppy", False),
])
def test_only_questions_a_fact_can_answer_get_cards_at_the_question_threshold(heard, factual):
    from companion.brain.prompt import asks_for_facts

    assert asks_for_facts(heard) is factual
