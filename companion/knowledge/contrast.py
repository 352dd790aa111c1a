"""Words that tell apart cards the sentence encoder finds alike: colours and small numbers.

all-MiniLM-L6-v2 reads "what do you get when you mix red and white" as close to the card "In paint,
red and blue mixed together make purple" (0.77) as to the one that answers it, "Adding white paint to
red paint makes pink" (0.69): a sentence vector weighs the topic (mixing paint) far above which colour.
The model, given the purple card, said purple. When the child names two or more colours or numbers (a
question about mixing, comparing or combining them), ``narrow`` keeps, of the cards retrieval found,
those that name all of them, when at least one does; otherwise all of them, in the encoder's order. One
colour is often a description that the right card need not repeat ("the little yellow fluffy baby of a
hen", "the cuddly grey bears in australia": probes that a one-word rule failed). Nothing is re-scored:
whether a card answers outright is still its similarity.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "grey", "brown",
            "violet", "indigo", "gold", "silver", "turquoise")
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
#: Spellings of the same word: one form each (digits as words).
_SAME = {"gray": "grey", "golden": "gold", **{str(n): word for n, word in enumerate(_NUMBERS)}}
#: "one" is left out: "one side of the moon", "in one year" name no number to match.
_CONTRAST = (frozenset(_COLOURS) | frozenset(_NUMBERS)) - {"one"}
_WORD = re.compile(r"[a-z]+|\d+")

T = TypeVar("T")


def contrast_words(text: str) -> frozenset[str]:
    """The colours and numbers (up to twenty, as words) that ``text`` names."""
    words = (_SAME.get(w, w) for w in _WORD.findall(text.lower()))
    return frozenset(w for w in words if w in _CONTRAST)


def narrow(query: str, found: Sequence[T], words_of) -> list[T]:
    """``found`` (best first), less the items whose words (``words_of(item)``: a card's text and
    questions) lack a colour or number of ``query``, when ``query`` names two or more and at least one
    item has them all."""
    wanted = contrast_words(query)
    if len(wanted) < 2 or not found:
        return list(found)
    named = [item for item in found if wanted <= contrast_words(words_of(item))]
    return named or list(found)
