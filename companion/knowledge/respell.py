"""Words the speech recogniser spelt wrong, spelt as the cards spell them.

Whisper writes a child's unusual word as it sounds: "what does a catapiller turn into", "what does your
hart do". The sentence encoder splits such a word into pieces that mean nothing, and no card matches. When
a question finds no card, ``Respeller.respell`` replaces each word the cards never use by the cards' word
that is spelt most like it (RapidFuzz's Levenshtein distance, within ``max_edits``), and the lookup is
tried once more, at a higher similarity (``KnowledgeConfig.respelled_similarity``). A word the cards use is
never changed, and what the model hears is not changed: only which card is found.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

#: Shorter words are left alone: "sea"/"see", "eat"/"bat" are too close to say which was meant.
MIN_LETTERS = 4
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def max_edits(word: str) -> int:
    """Letters that may differ: one in a short word ("hart"), two from 7 letters ("elefant"), three from
    10 ("catapiller")."""
    return 1 if len(word) < 7 else 2 if len(word) < 10 else 3


class Respeller:
    """The vocabulary of the cards (their texts and questions) and the nearest spelling in it."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.count = Counter(w for t in texts for w in WORD.findall(t.lower()))
        self.words = sorted(self.count)

    def word(self, word: str) -> str:
        """The cards' spelling of ``word``: itself when the cards use it or none is near enough; of the
        nearest, one with the same first letter, then the one with the most letters in common ("hart" is
        "heart", not "hard"), then the one the cards use most."""
        if word in self.count or len(word) < MIN_LETTERS:
            return word
        near = process.extract(word, self.words, scorer=Levenshtein.distance, score_cutoff=max_edits(word),
                               limit=20)
        if not near:
            return word
        return min(near, key=lambda m: (m[1], m[0][0] != word[0], -fuzz.ratio(word, m[0]), -self.count[m[0]]))[0]

    def respell(self, text: str) -> str:
        """``text`` in lower case, each word in the cards' spelling."""
        return WORD.sub(lambda m: self.word(m.group(0)), text.lower())
