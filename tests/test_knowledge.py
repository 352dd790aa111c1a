"""Fact cards, the sentence encoder and retrieval by meaning (the real prepared encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from companion.errors import CompanionError
from companion.knowledge.cards import FactCard, digest, load_cards
from companion.knowledge.index import Knowledge, KnowledgeConfig, KnowledgeIndex

CARDS = (
    FactCard("a1", "animals", "A spider has eight legs. Insects have six legs, so a spider is not an insect.",
             ("how many legs does a spider have", "is a spider an insect")),
    FactCard("s1", "space", "The Sun is the closest star to Earth.", ("what is the closest star", "is the sun a star")),
    FactCard("n1", "nature", "A caterpillar turns into a butterfly or a moth inside a chrysalis or cocoon.",
             ("what does a caterpillar turn into",)),
    FactCard("a2", "animals", "The giraffe is the tallest animal in the world.", ("what is the tallest animal",)),
)


def _write(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_bad_card_files_are_coded_errors_naming_the_line(tmp_path):
    good = json.dumps({"id": "x1", "topic": "t", "text": "Cows eat grass.", "questions": ["what do cows eat"]})
    for lines, fragment in (([good, "{not json"], "x.jsonl:2"), ([good, good], "duplicate"),
                            ([json.dumps({"id": "y", "topic": "t", "text": " ".join(["word"] * 60)})], "words"),
                            ([json.dumps({"id": "z", "text": "no topic"})], "x.jsonl:1")):
        with pytest.raises(CompanionError) as err:
            load_cards(_write(tmp_path / fragment.replace(":", "_"), lines))
        assert err.value.code == "KNOWLEDGE_INVALID" and fragment in str(err.value)
    with pytest.raises(CompanionError):
        load_cards(tmp_path / "empty")


def test_the_shipped_cards_load_and_cover_the_topics():
    cards = load_cards()
    assert len(cards) >= 1500, len(cards)
    topics = {c.topic for c in cards}
    for topic in ("animals", "space", "body", "weather", "nature", "science", "words", "everyday"):
        assert topic in topics
    assert all(c.questions for c in cards)


@pytest.fixture(scope="module")
def encoder(real_cache):
    from companion.encoder.runtime import SentenceEncoder

    return SentenceEncoder(real_cache.get("all-minilm-l6-v2").path / "encoder")


@pytest.mark.real_model
def test_the_encoder_puts_meaning_close(encoder):
    v = encoder.encode(["how many legs does a spider have", "spiders have eight legs",
                        "i scored a goal at football today"])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2] + 0.3


@pytest.mark.real_model
def test_retrieval_finds_the_card_by_meaning_not_by_words(encoder):
    knowledge = Knowledge(encoder, KnowledgeIndex.build(CARDS, encoder), KnowledgeConfig(min_similarity=0.5))
    for heard, card in (("how many legs has a spider got", "a1"), ("which star is nearest to us", "s1"),
                        ("what do caterpillars become when they grow up", "n1"),
                        ("whats the tallest animal in the whole world", "a2")):
        found = knowledge.find(heard)
        assert found and found[0].card.id == card, (heard, found)
    assert knowledge.find("i scored a goal at football today") == ()  # nothing relevant: no card


@pytest.mark.real_model
def test_a_statement_needs_a_closer_card_than_a_question_and_a_second_card_must_be_close(encoder):
    config = KnowledgeConfig(min_similarity=0.3, statement_similarity=0.99, max_cards=2, second_card_within=0.0)
    knowledge = Knowledge(encoder, KnowledgeIndex.build(CARDS, encoder), config)
    asked = knowledge.find("how many legs has a spider got", question=True)
    assert [r.card.id for r in asked] == ["a1"]  # the runner-up scores lower: left out
    assert knowledge.find("how many legs has a spider got", question=False) == ()  # below 0.99 as a statement
    both = Knowledge(encoder, knowledge.index, KnowledgeConfig(min_similarity=0.0, max_cards=2,
                                                               second_card_within=1.0))
    assert len(both.find("how many legs has a spider got")) == 2


def test_a_misheard_word_is_spelt_as_the_cards_spell_it_and_known_or_short_words_are_left_alone():
    from companion.knowledge.respell import Respeller

    r = Respeller(["A caterpillar will turn into a butterfly.", "Your heart pumps blood.", "It is hard work.",
                   "A baby owl is an owlet.", "Vowels are a e i o u.", "The sea is salty.", "Mussels live in the sea."])
    assert r.respell("what does a catapiller turn into") == "what does a caterpillar turn into"
    assert r.respell("what does your hart do") == "what does your heart do"  # one letter in: not "hard"
    assert r.respell("what do you call a baby owel") == "what do you call a baby owl"  # same first letter
    assert r.respell("what do mussels eat") == "what do mussels eat"  # a word the cards use is never changed
    assert r.respell("can you see the see") == "can you see the see"  # under four letters: left alone
    assert r.respell("what is a zorbulator") == "what is a zorbulator"  # nothing near: left alone


@pytest.mark.real_model
def test_a_question_that_finds_no_card_is_tried_again_with_the_cards_spelling(encoder):
    knowledge = Knowledge(encoder, KnowledgeIndex.build(CARDS, encoder), KnowledgeConfig())
    assert knowledge.index.lookup(encoder.encode_one("what does a catapiller turn into"), k=1,
                                  min_similarity=KnowledgeConfig().min_similarity) == []
    found = knowledge.find("what does a catapiller turn into")
    assert found and found[0].card.id == "n1", found
    assert knowledge.find("i scored a goal at footbal today") == ()


def test_a_sound_alike_word_gives_the_question_with_the_other_spelling():
    from companion.knowledge.homophones import variants

    assert variants("Why do cats per?") == ["why do cats purr?"]
    assert variants("why is the son so hot") == ["why is the sun so hot"]
    assert variants("what is a zebra") == []


@pytest.mark.real_model
def test_a_misheard_sound_alike_finds_the_card_that_answers_it_and_only_when_it_answers_it(encoder):
    cards = (*CARDS,
             FactCard("c1", "animals", "Cats purr when they feel happy and relaxed.", ("why do cats purr",)),
             FactCard("m1", "numbers", "A car on a motorway goes about 70 miles per hour.",
                      ("how fast does a car go",)))
    knowledge = Knowledge(encoder, KnowledgeIndex.build(cards, encoder), KnowledgeConfig())
    heard = knowledge.index.lookup(encoder.encode_one("why do cats per"), k=1, min_similarity=0.0)
    assert heard[0].score < KnowledgeConfig().answer_similarity  # as heard, no card answers it
    found = knowledge.find("why do cats per")
    assert found and found[0].card.id == "c1" and found[0].score >= KnowledgeConfig().answer_similarity
    assert knowledge.find("how many miles per hour does a car go")[0].card.id == "m1"  # "per" meant per
    # A statement is not a question: no second reading is tried.
    assert all(r.card.id != "c1" for r in knowledge.find("my cats per", question=False))


def test_the_colours_and_numbers_a_child_names_pick_between_cards_only_when_two_or_more_are_named():
    from companion.knowledge.contrast import contrast_words, narrow

    assert contrast_words("what do you get if you mix Red and WHITE and 2 gray") == {"red", "white", "two", "grey"}
    assert contrast_words("how many months in one year") == frozenset()  # "one" names no number to match
    found = ["In paint, red and blue mixed together make purple.", "Adding white paint to red paint makes pink."]
    assert narrow("what do you get when you mix red and white", found, str) == found[1:]
    assert narrow("what do you get when you mix red and green", found, str) == found  # no card has both
    assert narrow("what colour is a blue whale", found, str) == found  # one colour may be a description
    assert narrow("why is the sky blue", [], str) == []


@pytest.mark.real_model
def test_a_card_naming_the_childs_two_colours_is_found_before_a_closer_one_naming_another(encoder):
    cards = (FactCard("p", "science", "In paint, red and blue mixed together make purple.",
                      ("what does red and blue make",)),
             FactCard("k", "science", "Adding white paint to red paint makes pink.", ("how do you make pink",)))
    knowledge = Knowledge(encoder, KnowledgeIndex.build(cards, encoder),
                          KnowledgeConfig(min_similarity=0.3, second_card_within=1.0))
    heard = "what colour do you get when you mix red and white"
    by_meaning = knowledge.index.lookup(encoder.encode_one(heard), k=2, min_similarity=0.0)
    assert by_meaning[0].card.id == "p"  # the sentence vectors alone put purple first
    assert [r.card.id for r in knowledge.find(heard)] == ["k"]
    assert [r.card.id for r in knowledge.find("what does red and blue make")][0] == "p"


@pytest.mark.real_model
def test_the_index_is_cached_and_rebuilt_when_the_cards_change(encoder, tmp_path):
    first = KnowledgeIndex.cached(CARDS, encoder, "enc", tmp_path)
    files = list(tmp_path.glob("index-*.npz"))
    assert len(files) == 1 and digest(CARDS) in files[0].name
    again = KnowledgeIndex.cached(CARDS, encoder, "enc", tmp_path)
    assert np.array_equal(first.vectors, again.vectors)
    changed = CARDS[:3]
    KnowledgeIndex.cached(changed, encoder, "enc", tmp_path)
    files = list(tmp_path.glob("index-*.npz"))
    assert len(files) == 1 and digest(changed) in files[0].name  # the stale index is gone
    files[0].write_bytes(b"damaged")
    rebuilt = KnowledgeIndex.cached(changed, encoder, "enc", tmp_path)
    assert rebuilt.vectors.shape[0] == sum(1 + len(c.questions) for c in changed)


@pytest.mark.real_model
def test_a_cards_vector_does_not_depend_on_the_other_cards(encoder):
    """Each row is the sentence's vector as a query would be encoded (one sentence a pass): adding or
    removing cards leaves every other card's scores alone."""
    whole = KnowledgeIndex.build(CARDS, encoder)
    alone = KnowledgeIndex.build(CARDS[1:2], encoder)
    rows = whole.card_of == 1
    np.testing.assert_allclose(whole.vectors[rows], alone.vectors, atol=1e-6)
    np.testing.assert_allclose(alone.vectors[0], encoder.encode_one(CARDS[1].text), atol=1e-6)


@pytest.mark.real_model
def test_matching_cards_sit_right_before_the_childs_words(encoder, tiny_model_dir):
    import asyncio

    from companion.brain.conversation import Conversation
    from companion.llm.generate import Generator
    from tests.conftest import roomy_config

    generator = Generator(tiny_model_dir)
    knowledge = Knowledge(encoder, KnowledgeIndex.build(CARDS, encoder), KnowledgeConfig(min_similarity=0.5))
    conversation = Conversation(generator, roomy_config(), "kid", None, knowledge)
    messages = asyncio.run(conversation.messages("how many legs has a spider got"))
    assert messages[-1].content == "how many legs has a spider got"
    assert messages[-2].role == "system" and "eight legs" in messages[-2].content
    chat = asyncio.run(conversation.messages("i scored a goal at football today"))
    assert not any(m.content.startswith("Facts:") for m in chat)
    # No card: nothing is added (what to do when unsure is in the cached persona prompt, not per turn).
    unknown = asyncio.run(conversation.messages("why do cats have whiskers"))
    assert unknown[-2].role != "system" or not unknown[-2].content.startswith("Facts:")
    assert "not sure" in unknown[0].content
    generator.close()


def test_a_question_its_card_answers_closely_gets_the_cards_words_and_the_model_answers_the_rest(
        encoder, tiny_model_dir):
    import asyncio
    from dataclasses import replace

    from companion.brain.conversation import Conversation
    from companion.brain.plan import TurnContext, card_answers
    from companion.brain.prompt import Exchange
    from companion.parent.settings import ParentSettings
    from companion.safety.check import SafetyLayer
    from companion.llm.generate import Generator
    from companion.persona import load_persona
    from tests.conftest import roomy_config

    generator = Generator(tiny_model_dir)
    knowledge = Knowledge(encoder, KnowledgeIndex.build(CARDS, encoder), KnowledgeConfig(min_similarity=0.5))
    config = roomy_config()
    conversation = Conversation(generator, config, "kid", None, knowledge)

    def plan(heard, conv=conversation):
        return asyncio.run(conv.plan(heard))

    spider = plan("how many legs does a spider have")
    assert (spider.kind, spider.line, spider.prompt) == ("card", CARDS[0].text, ())
    assert spider.learn_facts and spider.verdict.action == "answer"
    assert plan("what does a caterpillar turn into").line == CARDS[2].text
    # A card that is only near the question grounds the model; it does not answer in its place.
    near = plan("which star is the furthest away")
    assert near.kind == "model" and near.line is None
    # Not a question: the model talks, with the card in view when it is close.
    assert plan("i saw a spider with eight legs").kind == "model"
    # Words that point back: "it" may be the dog of the last turn, not the spider the words alone find.
    close = TurnContext(child="kid", parent=ParentSettings(), cards=(CARDS[0].text,), card_score=0.95)
    after_dog = replace(close, history=(Exchange(1, "my dog is called rex", "Rex sounds lovely!", 12),))
    assert card_answers("how many legs does it have", close, conversation._brief)
    assert not card_answers("how many legs does it have", after_dog, conversation._brief)
    assert card_answers("how many legs does a spider have", after_dog, conversation._brief)
    assert not card_answers("how many legs does a spider have", replace(close, card_score=0.85), conversation._brief)
    # A persona with a shorter cap says the card cut at a sentence end.
    short = replace(load_persona("pip"), max_words=10)
    conversation._brief = replace(conversation._brief, persona=short)
    assert plan("how many legs does a spider have").line == "A spider has eight legs."
    # A card that fails the output check (here a parent's denied topic) is not said: the model answers.
    conversation._brief = replace(conversation._brief, safety=SafetyLayer(
        replace(config.safety, deny_topics=("butterfly",)), None))
    assert plan("what does a caterpillar turn into").kind == "model"
    # Turned off: every question goes to the model.
    off = Conversation(generator, replace(config, knowledge=replace(config.knowledge, answer_similarity=1.01)),
                       "kid2", None, knowledge)
    assert plan("how many legs does a spider have", off).kind == "model"
    generator.close()


def test_sums_are_worked_out_not_retrieved():
    from companion.knowledge.arithmetic import arithmetic_fact

    assert arithmetic_fact("what is eight plus five") == "Eight plus five makes thirteen."
    assert arithmetic_fact("whats twelve take away two") == "Twelve take away two leaves ten."
    assert arithmetic_fact("What is 7 times 8?") == "Seven times eight makes fifty-six."
    assert arithmetic_fact("how much is twenty-one and three") == "Twenty-one and three makes twenty-four."
    assert arithmetic_fact("i have two dogs and three cats") is None  # no sum asked
    assert arithmetic_fact("what is 10 divided by 3") is None  # no whole answer: no card


def test_the_number_next_to_another_and_a_words_spelling_are_worked_out():
    from companion.knowledge.arithmetic import worked_fact

    assert worked_fact("what comes after twenty") == "After twenty comes twenty-one."
    assert worked_fact("what number comes before ten?") == "Before ten comes nine."
    assert worked_fact("whats one more than 99") == "One more than ninety-nine is one hundred."
    assert worked_fact("How do you spell elephant?") == "Elephant is spelled E, L, E, P, H, A, N, T."
    assert worked_fact("what is eight plus five") == "Eight plus five makes thirteen."
    for not_asked in ("what comes after the rain", "what comes before zero", "spell my name please",
                      "whats after fifteen in fives", "what comes after 20 counting by tens",
                      "i can spell dog"):
        assert worked_fact(not_asked) is None, not_asked


def test_probes_load_and_an_answer_word_counts_only_as_a_whole_word():
    from companion.knowledge.index import Retrieved
    from companion.knowledge.probe import Probe, load_probes, mentions, pass_rate, probe

    probes = load_probes()
    assert len(probes) >= 400 and all(p.q and p.any for p in probes)
    assert len({p.q for p in probes}) == len(probes)  # no duplicate questions
    assert mentions("Ants live in big groups called colonies.", ["colony"])
    assert mentions("Grown-ups usually have thirty-two teeth.", ["thirty two"])
    assert not mentions("A pigeon is a bird.", ["pig"]) and not mentions("Its tentacles", ["ten"])

    class Found:  # what Knowledge.find answers, without the encoder
        def find(self, text):
            card = FactCard("x1", "animals", "A pig says oink.", ())
            return (Retrieved(card, 0.9),) if "pig" in text else ()

    results = probe(Found(), [Probe("what does a pig say", ("oink",)), Probe("what does a cow say", ("moo",))])
    assert [r.passed for r in results] == [True, False] and pass_rate(results) == 0.5
    assert "no card" in results[1].describe()


@pytest.mark.real_model
def test_everyday_child_questions_retrieve_a_card_with_the_answer(real_cache):
    """The probes through the production retrieval (the shipped cards, the default thresholds)."""
    from companion.knowledge.index import load_knowledge
    from companion.knowledge.probe import load_probes, pass_rate, probe

    knowledge = load_knowledge(KnowledgeConfig(), real_cache)
    assert knowledge is not None
    results = probe(knowledge, load_probes())
    rate = pass_rate(results)
    misses = "\n".join(r.describe() for r in results if not r.passed)
    assert rate >= 0.95, f"{rate:.1%} of {len(results)} probes find their answer; misses:\n{misses}"


def test_which_of_two_numbers_is_bigger_is_worked_out():
    from companion.knowledge.arithmetic import comparison_fact, worked_fact

    assert worked_fact("whats bigger a hundred or a thousand") == "One thousand is bigger than one hundred."
    assert comparison_fact("which number is smaller, twelve or twenty?") == "Twelve is smaller than twenty."
    assert comparison_fact("is fifty bigger than a hundred") == "One hundred is bigger than fifty."
    assert comparison_fact("seven or three which one is more") == "Seven is more than three."
    # Equal numbers, or things that are not numbers, are left to the cards and the model.
    assert comparison_fact("which is more six or six") is None
    assert comparison_fact("what is bigger an elephant or a mouse") is None
