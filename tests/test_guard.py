"""The word cap ends a reply at a sentence's end, never mid-word or on an abbreviation (brain/guard.py)."""

from __future__ import annotations

import asyncio

from companion.brain.guard import OutputGuard, cap_margin
from companion.llm.generate import TokenEvent
from companion.tts.clauses import ClauseSplitter
from companion.voice.testing import ScriptedBrain
from tests.conftest import roomy_config


def _chunks(reply: str, max_words: int = 60, heard: str = "tell me a story") -> list:
    plan = asyncio.run(ScriptedBrain(max_words=max_words).plan(heard))
    guard = OutputGuard(plan)
    chunks = []
    for word in reply.split(" "):  # token by token, as the model writes
        chunks += guard.push(word + " ")
        if guard.done:
            break
    if not guard.done:
        chunks += guard.flush()
    return chunks


def _said(reply: str, max_words: int = 60, heard: str = "tell me a story") -> str:
    return " ".join(c.text for c in _chunks(reply, max_words, heard))


STORY = ("Once upon a time, there was a fox called Mr. Fox who lived in a little den by the river. "
         "Every morning he went to look for breakfast in the forest with his friend Dr. Owl, who knew every tree. "
         "One day they found a shiny blue egg under a big old oak tree.")


def test_a_capped_story_ends_at_a_sentence_end_not_on_an_abbreviation():
    for cap in (20, 25, 30, 40, 60):
        said = _said(STORY, cap)
        assert said.endswith((".", "!", "?")), (cap, said)
        assert not said.endswith(("Mr.", "Dr.")), (cap, said)
        assert len(said.split()) <= cap + cap_margin(cap), (cap, said)
        assert STORY.startswith(said)  # whole sentences of the story, in order


def test_a_sentence_begun_is_finished_within_the_margin_and_a_run_on_one_is_cut_at_a_word():
    # 20 words: the first sentence (19 words after its comma clause) is finished although it passes the cap.
    said = _said(STORY, 20)
    assert said == STORY.split(" Every")[0]
    run_on = "Once upon a time, " + " ".join(["there was a very long sentence that never ends"] * 6)
    said = _said(run_on, 12)
    assert said.startswith("Once upon a time,") and len(said.split()) <= 12 + cap_margin(12)
    assert all(w in run_on.split() for w in said.rstrip(".").split())  # whole words only


def test_the_splitter_does_not_end_a_sentence_on_a_title():
    splitter = ClauseSplitter()
    pieces = splitter.push("We met Mr. Fox and Dr. Owl today. ") + splitter.flush()
    assert pieces == ["We met Mr. Fox and Dr. Owl today."]


def test_and_then_continues_the_story_that_the_cap_ended(tiny_model_dir):
    """The capped story is what the model sees last, so "and then?" is answered by going on with it."""
    from companion.brain.conversation import Conversation, SpokenReply
    from companion.llm.generate import Generator

    generator = Generator(tiny_model_dir)
    conversation = Conversation(generator, roomy_config(), "kid", None, None)

    told = _said(STORY, 25)

    async def go():
        plan = await conversation.plan("tell me a story about a fox")
        await conversation.remember(SpokenReply(plan, told))
        again = await conversation.plan("and then?")
        return told, again, await conversation.messages("and then?")

    told, again, messages = asyncio.run(go())
    generator.close()
    assert again.kind == "model"
    assert [m.role for m in messages[-3:]] == ["user", "assistant", "user"]
    assert messages[-2].content == told and messages[-1].content == "and then?"


def test_the_exchange_prefilled_while_the_reply_plays_is_what_the_next_prompt_starts_with(tiny_model_dir):
    """``warm_next(expected)`` runs before the reply is remembered; the next turn's prompt then finds
    everything up to the child's new words in the prefix cache."""
    from companion.brain.conversation import Conversation, SpokenReply
    from companion.llm.generate import Generator

    generator = Generator(tiny_model_dir)
    conversation = Conversation(generator, roomy_config(), "kid", None, None)

    async def go():
        plan = await conversation.plan("why is the sky blue")
        spoken = SpokenReply(plan, "Because air scatters blue light. Isn't that fun?")
        generator.prefix_cache.clear()
        warmed = await conversation.warm_next(spoken)  # the reply is still playing
        await conversation.remember(spoken)
        return warmed, await conversation.plan("and the sea?")

    warmed, after = asyncio.run(go())
    cached, _ = generator.prefix_cache.longest_prefix(list(after.prompt))
    generator.close()
    uncached = generator.tokenizer.decode(list(after.prompt[cached:]))
    assert cached == warmed and "scatters" not in uncached and "and the sea?" in uncached


def test_no_stock_sentence_comes_back_in_a_ten_turn_conversation(tiny_model_dir):
    """Every reply of the conversation so far (up to ten) is passed to the sampler as n-grams to avoid."""
    from companion.brain.conversation import Conversation, SpokenReply
    from companion.llm.generate import Generator

    generator = Generator(tiny_model_dir)
    conversation = Conversation(generator, roomy_config(), "kid", None, None)
    stock = "Let me know if you have any other questions."

    async def go():
        for i, said in enumerate([stock] + [f"That is lovely number {n}." for n in range(8)]):
            plan = await conversation.plan(f"line {i}")
            await conversation.remember(SpokenReply(plan, said))
        return await conversation.plan("thats a good idea")

    plan = asyncio.run(go())
    generator.close()
    assert tuple(generator.tokenizer.encode(stock)) in plan.avoid


def test_the_words_so_far_leave_the_finished_turn_only_its_last_words_to_prefill(tiny_model_dir):
    from companion.brain.conversation import Conversation
    from companion.llm.generate import Generator

    generator = Generator(tiny_model_dir)
    conversation = Conversation(generator, roomy_config(), "kid", None, None)

    async def go():
        generator.prefix_cache.clear()
        warmed = await conversation.prefill_heard_so_far("why is the sky bl")  # "bl" may be cut off: left out
        return warmed, await conversation.plan("why is the sky blue today?")

    warmed, plan = asyncio.run(go())
    cached, _ = generator.prefix_cache.longest_prefix(list(plan.prompt))
    generator.close()
    assert warmed > 0 and cached == warmed
    assert generator.tokenizer.decode(list(plan.prompt[cached:])).lstrip().startswith("blue today?")


def test_a_first_sentence_that_says_the_childs_news_back_is_not_spoken():
    news = "my best friend is moving away"
    reply = "It's okay that your best friend is moving away. Friends can still talk on the phone and write letters."
    assert _said(reply, heard=news) == "Friends can still talk on the phone and write letters."
    # Said back in pieces (a first clause cut at a comma) is dropped whole too: nothing of it was spoken yet.
    said = _said("Oh no, your best friend is moving away to a new town. That must feel sad.", heard=news)
    assert said == "That must feel sad."
    # A first clause with any of the child's words ("It's okay that your friend is") cannot tell yet: its
    # sentence is held until it ends. One with none of them is spoken at once.
    said = _said("It's okay that your friend is moving away. Friends can still write letters.", heard=news)
    assert said == "Friends can still write letters."
    chunks = _chunks("Oh no, that sounds really sad, and it is hard to say goodbye. Friends can still write letters.",
                     heard=news)
    assert [c.text for c in chunks][:2] == ["Oh no, that sounds really sad,", "and it is hard to say goodbye."]
    guard = OutputGuard(asyncio.run(ScriptedBrain().plan(news)))
    assert [c.text for c in guard.push("Oh no, that sounds so sad, ")] == ["Oh no, that sounds so sad,"]
    held = OutputGuard(asyncio.run(ScriptedBrain().plan(news)))
    assert held.push("Oh no, your friend is ") == [] and held.push("going, ") == []
    # A run-on first sentence is spoken once twelve words of it are held.
    guard = OutputGuard(asyncio.run(ScriptedBrain().plan(news)))
    out = []
    for word in ("Your best friend moving away is sad and it is hard to say goodbye to a friend you love so much, "
                 "and then").split():
        out += guard.push(word + " ")
    assert [c.text for c in out] == ["Your best friend moving away is",
                                     "sad and it is hard to say goodbye to a friend you love so much,"]
    # Later sentences may use the child's words.
    assert _said("That sounds sad. When your best friend is moving away, you can still be friends.", heard=news) == \
        "That sounds sad. When your best friend is moving away, you can still be friends."


def test_an_answer_restating_a_question_and_a_reply_with_nothing_else_are_spoken():
    # To a question, restating it is how an answer begins.
    question = "which planet is closest to the sun"
    assert _said("Mercury is the planet closest to the sun.", heard=question) == \
        "Mercury is the planet closest to the sun."
    # When the echo is all the reply has, it is said after all: better than silence.
    assert _said("Your best friend is moving away.", heard="my best friend is moving away") == \
        "Your best friend is moving away."
    # Too few of the child's words to tell an echo from a reply: nothing is held.
    assert _said("A puppy! How lovely.", heard="i got a puppy") == "A puppy! How lovely."


def test_a_story_asked_for_gets_twice_the_words_and_tokens_of_an_ordinary_reply(tiny_model_dir):
    from companion.brain.conversation import Conversation
    from companion.brain.guard import reply_chunks
    from companion.brain.plan import asks_for_story
    from companion.llm.generate import Generator
    from companion.llm.sampling import SamplingParams

    assert asks_for_story("can you tell me a story about a dragon") and asks_for_story("make up a story")
    assert not asks_for_story("whats your favourite story") and not asks_for_story("what is a story")
    generator = Generator(tiny_model_dir)
    conversation = Conversation(generator, roomy_config(), "kid", None)
    story = asyncio.run(conversation.plan("tell me a story about a space cat"))
    chat = asyncio.run(conversation.plan("i like cats"))
    generator.close()
    assert (chat.max_words, chat.reply_scale) == (40, 1.0)
    assert (story.max_words, story.reply_scale) == (80, 2.0)

    seen = []

    class Recording:
        async def stream(self, prompt_ids, params, gate=None, avoid=()):
            seen.append(params.max_new_tokens)
            for i, word in enumerate(STORY.split(" ") * 3):
                yield TokenEvent(i, (" " if i else "") + word, i, 0.0)

    async def said(plan):
        return " ".join([c.text async for c in reply_chunks(plan, Recording(), SamplingParams(max_new_tokens=80))])

    long, short = asyncio.run(said(story)), asyncio.run(said(chat))
    assert seen == [160, 80]
    assert 40 < len(long.split()) <= 80 + cap_margin(80) and len(short.split()) <= 40 + cap_margin(40)


def test_news_a_hello_or_an_ask_to_play_asks_back_and_questions_stories_goodbyes_do_not(tiny_model_dir):
    from companion.brain.conversation import Conversation
    from companion.brain.guard import reply_chunks
    from companion.brain.plan import ASK_WITHIN_TOKENS, asks_back
    from companion.llm.generate import Generator
    from companion.llm.sampling import SamplingParams

    for heard in ("we got a new puppy and hes called biscuit", "I made a cake with my dad.", "hi pip",
                  "lets play a guessing game", "im so bored theres nothing to do"):
        assert asks_back(heard), heard
    for heard in ("why do cats purr", "how many legs does a spider have", "tell me a story about a dragon",
                  "Do you have any pets?", "Hello, what is your name?",
                  "thank you goodbye", "bye pip", "good night", ""):
        assert not asks_back(heard), heard
    generator = Generator(tiny_model_dir)
    conversation = Conversation(generator, roomy_config(), "kid", None)
    news = asyncio.run(conversation.plan("i got a new bike for my birthday"))
    bye = asyncio.run(conversation.plan("bye bye see you tomorrow"))
    generator.close()
    assert (news.ask_within, bye.ask_within) == (ASK_WITHIN_TOKENS, 0)
    # Going on, the model may not recite its persona: the description's n-grams are never said.
    said = [generator.tokenizer.decode(list(a)).strip() for a in news.avoid]
    assert conversation.persona.description in said and conversation.persona.style in said
    assert ", ".join(conversation.persona.favourite_topics) in said

    seen = []

    class Recording:
        async def stream(self, prompt_ids, params, gate=None, avoid=()):
            seen.append(params.ask_within)
            yield TokenEvent(0, "Wow!", 0, 0.0)

    async def said(plan):
        return [c.text async for c in reply_chunks(plan, Recording(), SamplingParams())]

    asyncio.run(said(news)), asyncio.run(said(bye))
    assert seen == [ASK_WITHIN_TOKENS, 0]


def test_the_robot_never_claims_a_pet_or_a_family_of_its_own():
    """After the child's puppy Biscuit, "do you have any pets?" got "Yes, I have a puppy named Biscuit"."""
    from companion.brain.claims import LINES, robot_owns

    heard = "do you have any pets"
    for reply, kind in (("Yes, I have a puppy named Biscuit. He loves to play!", "pet"),
                        ("Yes! I've got two little kittens.", "pet"),
                        ("I love dogs, my puppy is called Max.", "pet"),
                        ("No, but my mum has a cat.", "family")):
        chunks = _chunks(reply, heard=heard)
        said = " ".join(c.text for c in chunks)
        assert said.endswith(LINES[kind]) and chunks[-1].source == "robot", (reply, said)
        assert "Biscuit" not in said and "Max" not in said and not said.startswith(("Yes", "No,")), said
    # A first "Yes" that is not followed by a claim is spoken with what follows, and alone when alone.
    assert _said("Yes, I love hearing about animals! What is your pet called?", heard=heard) == \
        "Yes, I love hearing about animals! What is your pet called?"
    assert _said("Yes!", heard=heard) == "Yes!"
    # Not claims: the child's pets, seeing one, a favourite, a story's dog, the family the robot lives with.
    for sentence in ("You have a puppy called Biscuit!", "I have seen a puppy at the park.",
                     "I had a fun time hearing about your dog.", "My favourite pet is a dog.",
                     "I live with the family.", "Oh my, a puppy!", "I have an idea!"):
        assert robot_owns(sentence) is None, sentence
    story = "Once upon a time, a girl said: my puppy is lost! She looked everywhere."
    assert _said(story, heard="tell me a story about a puppy") == story
    assert _said(story, heard="lets pretend we have a puppy") == story


def test_the_reply_ends_where_a_code_block_begins():
    """To a child's "yeah", the coder model went on from a friendly sentence into a Python function."""
    reply = ("That's great! If you have any more questions, feel free to ask. ```python\n# Define a simple "
             "function to greet the child\ndef greet_child(child_name): print(f\"Hi there, {child_name}!\")```")
    chunks = _chunks(reply, heard="yeah")
    said = " ".join(c.text for c in chunks)
    assert said == "That's great! If you have any more questions, feel free to ask."
    assert all(c.source == "model" for c in chunks)
    # Only code: nothing of it is said.
    assert _said("```python\nprint('hi')\n```", heard="yeah") == ""
