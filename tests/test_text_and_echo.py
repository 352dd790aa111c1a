import asyncio

import numpy as np

from companion.audio.sinks import SimulatedSpeaker
from companion.tts.clauses import ClauseSplitter
from companion.tts.speakable import speakable
from companion.voice.echo import echo_similarity, repeats_robot


def _feed(splitter, text, step=3):
    out = []
    for i in range(0, len(text), step):
        out += splitter.push(text[i:i + step])
    return out + splitter.flush()


def test_first_clause_is_flushed_early_later_ones_at_sentence_ends():
    pieces = _feed(ClauseSplitter(), "Once upon a time, there was a dragon, a small one. He liked tea! The end")
    assert pieces == ["Once upon a time,", "there was a dragon, a small one.", "He liked tea!", "The end"]


def test_a_long_first_sentence_is_cut_after_a_few_words_later_ones_are_not():
    text = "The moon is about 384,000 kilometers away from the Earth. It is very far away from all of us here."
    pieces = _feed(ClauseSplitter(), text)
    assert pieces == ["The moon is about 384,000 kilometers", "away from the Earth.",
                      "It is very far away from all of us here."]
    assert _feed(ClauseSplitter(), "My name is Pip.") == ["My name is Pip."]  # short ones stay whole


def test_splitter_cuts_unpunctuated_text_at_a_bounded_length():
    pieces = _feed(ClauseSplitter(), "word " * 200)
    assert all(len(p) <= 240 for p in pieces) and " ".join(pieces).split() == ["word"] * 200


def test_speakable_removes_markdown_emoji_code_and_reads_symbols():
    text = speakable("**Hello!** 😀 I am 5 & you are 50% *awesome*.\n- a list item\n```py\nprint(1)\n```\nSee https://x.y")
    assert text == "Hello! I am 5 and you are 50 percent awesome. a list item See"


def test_echo_similarity_tells_echo_from_a_child():
    rng = np.random.default_rng(0)

    async def scenario():
        player = SimulatedSpeaker(16000)
        robot = (0.3 * rng.normal(size=16000)).astype(np.float32)
        player.enqueue(robot, 16000)
        await asyncio.sleep(0.6)
        t_start = player.recent(0.0)[0].t
        t = t_start + 0.3
        i = int(0.3 * 16000) - int(0.04 * 16000)  # 40 ms echo delay
        echo = 0.4 * robot[i:i + 3200]
        child = (0.3 * rng.normal(size=3200)).astype(np.float32)
        return (echo_similarity(echo, t, player), echo_similarity(child, t, player),
                echo_similarity(echo + child, t, player))

    only_echo, only_child, both = asyncio.run(scenario())
    assert only_echo > 0.95 and only_child < 0.2 and both < 0.6


def test_repeats_robot_only_for_the_robots_own_words():
    said = "The moon is a big round rock that goes around the Earth."
    assert repeats_robot("the moon is a big round rock", said)
    assert not repeats_robot("tell me about the sun", said)
    assert not repeats_robot("moon", said)  # one word is not enough to call it echo


def test_a_transcript_that_stops_mid_phrase_looks_unfinished():
    from companion.voice.turn_end import looks_unfinished

    for text in ["And so my fellow Americans", "I went to the park with my", "Can I tell you about",
                 "My dog is called and", "Um."]:
        assert looks_unfinished(text), text
    for text in ["Why is the sky blue?", "I have a puppy called Biscuit.", "Good night, robot!", "",
                 "What can I do for you?", "Thank you."]:
        assert not looks_unfinished(text), text
