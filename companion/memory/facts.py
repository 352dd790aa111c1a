"""Long-term facts from what a child says, by rules (fast, predictable, no model call).

Each rule returns (kind, value). Rules run after the reply, never delaying it.
Personal information (addresses, phone numbers, schools) is never a fact here;
the safety layer keeps it out of memory as a whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PETS = ("dog", "cat", "puppy", "kitten", "hamster", "fish", "goldfish", "rabbit", "bunny", "bird", "parrot",
        "turtle", "tortoise", "pony", "horse", "guinea pig", "lizard", "snake", "mouse", "rat", "chicken")
_PET = "|".join(sorted(PETS, key=len, reverse=True))
_NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                        "thirteen fourteen fifteen".split())}
_WORD = r"[A-Za-z][A-Za-z'-]*"
_NOT_NAMES = {"not", "so", "very", "really", "just", "a", "the", "sad", "happy", "fine", "good", "ok", "okay",
              "scared", "tired", "hungry", "bored", "here", "back", "sorry", "going", "doing", "playing"}


@dataclass(frozen=True)
class ExtractedFact:
    kind: str
    value: str


def _clean(value: str, max_words: int = 5) -> str:
    value = re.split(r"[.!?,;]| and | but | because ", value, maxsplit=1)[0]
    words = value.strip().split()[:max_words]
    return " ".join(words).strip(" '\"")


def _name(value: str) -> str:
    return value[:1].upper() + value[1:].lower()


def extract_facts(text: str) -> list[ExtractedFact]:
    t = " " + re.sub(r"\s+", " ", text.strip()) + " "
    low = t.lower()
    out: list[ExtractedFact] = []

    m = re.search(rf"\b(?:my name is|my name's|call me|i am called|i'm called)\s+({_WORD})", t, re.I)
    if not m:
        m = re.search(rf"\b(?:i am|i'm)\s+({_WORD})\b(?:\s+and|\s*[,.!]|\s+i\b)", t, re.I)
        if m and (m.group(1).lower() in _NOT_NAMES or m.group(1).lower() in _NUMBERS or not m.group(1)[0].isupper()):
            m = None
    if m:
        out.append(ExtractedFact("name", _name(m.group(1))))

    m = re.search(r"\b(?:i am|i'm)\s+(\d{1,2}|" + "|".join(_NUMBERS) + r")\b(?:\s+years?\s+old)?", low)
    if m:
        age = m.group(1)
        out.append(ExtractedFact("age", str(_NUMBERS.get(age, age))))

    for m in re.finditer(r"\bmy (?:favou?rite|fave) (colou?r|animal|food|game|toy|book|song|sport|show|movie|"
                         r"dinosaur|fruit|thing)\s+(?:is|are)\s+(?:a |an |the )?([^.!?]+)", low):
        topic = {"color": "colour"}.get(m.group(1), m.group(1))
        kind = f"favourite_{topic}" if topic in ("colour", "animal", "food") else "likes"
        value = _clean(m.group(2), 4)
        if value:
            out.append(ExtractedFact(kind, value if kind != "likes" else f"{topic}: {value}"))

    for m in re.finditer(rf"\bi (?:have|got|own) (?:a|an|two|three|\d) ({_PET})s?\b(?:\s+(?:called|named)\s+({_WORD}))?",
                         t, re.I):
        pet = m.group(1).lower()
        out.append(ExtractedFact("pet", f"{pet} {_name(m.group(2))}" if m.group(2) else pet))
    for m in re.finditer(rf"\bmy ({_PET})(?:'s name)? is (?:called |named )?({_WORD})", t, re.I):
        if m.group(2).lower() not in _NOT_NAMES:
            out.append(ExtractedFact("pet", f"{m.group(1).lower()} {_name(m.group(2))}"))
    for m in re.finditer(rf"\bmy ({_PET}) (?:called|named) ({_WORD})", t, re.I):
        out.append(ExtractedFact("pet", f"{m.group(1).lower()} {_name(m.group(2))}"))

    for m in re.finditer(rf"\bmy (?:best )?friend(?:'s name)? is (?:called |named )?({_WORD})", t, re.I):
        if m.group(1).lower() not in _NOT_NAMES:
            out.append(ExtractedFact("friend", _name(m.group(1))))
    for m in re.finditer(rf"\bmy (brother|sister|mum|mom|dad|grandma|grandpa|baby brother|baby sister)"
                         rf"(?:'s name)? is (?:called |named )?({_WORD})", t, re.I):
        if m.group(2).lower() not in _NOT_NAMES:
            out.append(ExtractedFact("family", f"{m.group(1).lower()} {_name(m.group(2))}"))

    for m in re.finditer(r"\bi (?:really |just )?(?:love|like|adore) ([^.!?]+)", low):
        value = _clean(m.group(1), 4)
        if value and not value.startswith(("you", "it", "that", "this", "to ")):
            out.append(ExtractedFact("likes", value))
    for m in re.finditer(r"\bi (?:really )?(?:don't|do not|hate) (?:like )?([^.!?]+)", low):
        value = _clean(m.group(1), 4)
        if value and not value.startswith(("you", "it", "that", "this", "know")):
            out.append(ExtractedFact("dislikes", value))
    for m in re.finditer(r"\b(?:i am|i'm) (?:really |very |so )?(?:scared|afraid|frightened) of ([^.!?]+)", low):
        value = _clean(m.group(1), 4)
        if value:
            out.append(ExtractedFact("fears", value))

    seen: set[tuple[str, str]] = set()
    unique = []
    for f in out:
        if (f.kind, f.value) not in seen and f.value:
            seen.add((f.kind, f.value))
            unique.append(f)
    return unique


_LABELS = {
    "name": "the child's name is {v}", "age": "the child is {v} years old", "pet": "pet: {v}", "friend": "friend: {v}",
    "family": "family: {v}", "likes": "likes {v}", "dislikes": "does not like {v}", "fears": "is scared of {v}",
    "favourite_colour": "favourite colour: {v}", "favourite_animal": "favourite animal: {v}",
    "favourite_food": "favourite food: {v}",
}


def describe(kind: str, value: str) -> str:
    return _LABELS.get(kind, kind.replace("_", " ") + ": {v}").format(v=value)
