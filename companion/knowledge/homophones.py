"""Words the speech recogniser heard right but spelt as another word that sounds the same.

Whisper writes the commoner spelling of a sound: "why do cats per", "why do rabbits have fluffy tales",
"how many legs does an aunt have". Each word is a real word the cards use too, so the respeller
(``respell.py``, for words the cards never use) leaves it alone, and the sentence encoder reads it as
written: the purring card scored 0.65 for "why do cats per". ``variants`` gives the question with one
such word replaced by what a child more likely said; ``Knowledge.find`` takes a variant only when it
finds a card that answers it outright (``KnowledgeConfig.answer_similarity``) and clearly better than
the words as heard, so "how many hours in a day" keeps its "hours".
"""

from __future__ import annotations

import re

#: Spelt as heard -> what a child asking a question more likely meant. Pairs where both readings are
#: everyday questions ("sea"/"see", "right"/"write") are left out: no card can tell them apart.
SOUNDS_LIKE: dict[str, str] = {
    "per": "purr", "pers": "purrs", "tale": "tail", "tales": "tails", "bare": "bear", "bares": "bears",
    "dear": "deer", "flour": "flower", "flours": "flowers", "hare": "hair", "knows": "nose", "son": "sun",
    "aunt": "ant", "aunts": "ants", "wail": "whale", "wails": "whales", "pause": "paws", "clause": "claws",
    "clauses": "claws", "tow": "toe", "tows": "toes", "plain": "plane", "plains": "planes", "tied": "tide",
    "reign": "rain", "hoarse": "horse", "main": "mane", "flee": "flea", "pair": "pear", "pairs": "pears",
    "pray": "prey", "be": "bee", "whole": "hole", "mousse": "moose",
}

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
#: Variants tried at most per question: each is one more encoder pass (~3 ms on 2 cores).
MAX_VARIANTS = 2


def variants(text: str) -> list[str]:
    """``text`` (lower case) with one sound-alike word replaced, for each such word in it (at most
    ``MAX_VARIANTS``)."""
    low = text.lower()
    return [low[:m.start()] + SOUNDS_LIKE[m.group(0)] + low[m.end():]
            for m in _WORD.finditer(low) if m.group(0) in SOUNDS_LIKE][:MAX_VARIANTS]
