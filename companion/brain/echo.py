"""Parroting: a reply whose first sentence says the child's own words back.

One measure, used twice: the output guard (``brain/guard.py``) keeps such a sentence from being spoken,
and ``companion eval quality`` counts the replies that still do it (``echo_rate``).
"""

from __future__ import annotations

import re

from companion.brain.prompt import looks_like_question

#: Share of the child's content words that the reply's first sentence repeats to count as an echo.
ECHO_SHARE = 0.7
#: Fewer content words than this in the child's line: too short to tell an echo from an answer.
ECHO_MIN_WORDS = 3
# Function words, fillers and question words: what is left is what the child talked about.
STOPWORDS = frozenset("""
a an the and or but so if then than because cause cuz of to in on at by for with from into about up down out
off over under again i me my mine myself you your yours yourself we us our they them their he him his she her
it its this that these those there here what whats which who whos whom why how when where whens wheres hows
is are was were be been being am do does did doing done have has had having got get gets can could will would
shall should may might must im ive id youre youve youd its isnt arent wasnt dont doesnt didnt cant couldnt wont
wouldnt havent hasnt lets thats theres heres not no yes yeah ok okay oh um uh er erm hmm like just really very
too also all any some much many more most lot lots ever even well now please tell know say said thing things
one as only
""".split())

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def plain(text: str) -> str:
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def _stem(word: str) -> str:
    word = word.removesuffix("'s")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> set[str]:
    """The words that carry what was said: lower-cased, stopwords out, plurals folded."""
    return {_stem(w) for w in WORD.findall(plain(text)) if w.replace("'", "") not in STOPWORDS}


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def echo_share(said: set[str], text: str) -> float:
    """The share of ``said`` (the child's content words) that ``text`` repeats."""
    return len(said & content_words(text)) / len(said) if said else 0.0


def echoes(child: str, reply: str) -> bool | None:
    """The reply's first sentence repeats >= 70 % of the child's content words (None: fewer than 3).

    To a question, an answer restates it ("which planet is closest to the sun" -> "Mercury is the
    closest planet to the Sun."): that is an answer, not an echo. Only the question said back as a
    question ("Why is the sky blue? ...") counts there."""
    said = content_words(child)
    if len(said) < ECHO_MIN_WORDS:
        return None
    first = sentences(reply)[:1]
    if not first or echo_share(said, first[0]) < ECHO_SHARE:
        return False
    return not looks_like_question(child) or first[0].rstrip().endswith("?")
