"""Questions a child asks about themselves, answered from stored facts.

A small model often mixes up "my" and "your" ("Do you remember my name?" ->
"my name is Pip"). When the child asks about something the robot has a fact
for, the answer comes from the fact, so memory is right every time. When it has
none, it says so and asks ("You haven't told me your favourite food yet - what is
it?"): a model asked the same invents one ("My favorite food is pizza."). Anything
else goes to the language model.
"""

from __future__ import annotations

import re

from companion.memory.store import Fact

_ASKS = [
    (r"\b(remember|know|what'?s|what is|say|tell me)\b.*\bmy name\b|\bwho am i\b", "name"),
    (r"\bhow old (am i|will i be|i am|i'?ll be)\b|\b(remember|know|what'?s|what is)\b.*\bmy age\b", "age"),
    (r"\bmy (dog|cat|puppy|kitten|hamster|fish|goldfish|rabbit|bunny|bird|parrot|turtle|pony|horse|pet)\b.*"
     r"\b(called|name)\b|\bwhat'?s my (dog|cat|pet)'?s? name\b|\bwhat (pet|animal) do i have\b", "pet"),
    (r"\b(what|which|whats)( is| was|'s)? my fav(ou?rite)? (animal)\b", "favourite_animal"),
    (r"\b(what|which|whats)( is| was|'s)? my fav(ou?rite)? (colou?r)\b", "favourite_colour"),
    (r"\b(what|which|whats)( is| was|'s)? my fav(ou?rite)? (food)\b", "favourite_food"),
    (r"\b(what|which|whats)( is| was|'s)? my fav(ou?rite)? (\w+)\b", "favourite_other"),
    (r"\bwho is my (best )?friend\b|\bmy (best )?friend'?s name\b", "friend"),
    # Things about the child the facts never hold: answered honestly, never guessed.
    (r"\b(what|whats|what's|when|who|where)\b[\w' ]{0,12}\bmy ((little |big |baby |older |younger )?"
     r"(sister|brother)'?s? name|middle name|last name|surname|birthday|teacher|hair|eyes|mum'?s? name|"
     r"dad'?s? name|mummy'?s? name|daddy'?s? name)\b", "personal"),
    (r"\bhow many (brothers|sisters|brothers and sisters|cousins|pets|dogs|cats) (have i got|do i have)\b|"
     r"\bdo i have (a |any )?(brothers?|sisters?)\b", "family"),
    (r"\b(what|which) (\w+ ){0,2}do i (love|like|support)\b|\bwhat do i really (love|like)\b", "likes"),
]


def _untold(kind: str, text: str) -> str:
    """What the robot says when it was never told the thing the child asks about."""
    if kind.startswith("favourite_"):
        thing = re.search(r"\bfav(?:ou?rite)? (\w+)", text)
        what = thing.group(1) if thing else kind.split("_", 1)[1]
        return f"You haven't told me your favourite {what} yet. What is it?"
    if kind == "personal":
        thing = re.search(r"\bmy ([\w' ]+?)(\?|$| is| are| called)", text)
        what = thing.group(1).strip() if thing else "that"
        what = re.sub(r"\b(sister|brother|mum|dad|mummy|daddy)s\b", r"\1's", what)
        what = {"teacher": "teacher's name", "hair": "hair colour", "eyes": "eye colour"}.get(what, what)
        return f"You haven't told me your {what} yet. Will you tell me?"
    if kind == "family":
        who = re.search(r"\b(brothers and sisters|brothers?|sisters?|cousins|pets|dogs|cats)\b", text)
        what = who.group(1) if who else "family"
        what = what if what.endswith("s") else what + "s"
        return f"You haven't told me about your {what} yet. Will you tell me?"
    if kind == "likes":
        thing = re.search(r"\b(?:what|which) ((?:\w+ ){1,2})do i (love|like|support)\b", text)
        if thing and thing.group(1).strip() not in ("else", "really"):
            return f"You haven't told me which {thing.group(1).strip()} you {thing.group(2)} yet. Which one is it?"
    return {"name": "You haven't told me your name yet. What is it?",
            "age": "You haven't told me how old you are yet. How old are you?",
            "pet": "You haven't told me about a pet yet. Do you have one?",
            "friend": "You haven't told me about your friend yet. What is their name?",
            }.get(kind, "You haven't told me that yet. Will you tell me?")


def answer_from_facts(heard: str, facts: list[Fact]) -> str | None:
    text = heard.lower()
    if "?" not in heard and not re.search(r"\b(remember|what|whats|who|how|which|know|tell|when|where)\b", text):
        return None
    if "?" not in heard and re.search(r"\bmy\b[\w' ]{0,25}\b(is|are|was)\b \w", text) and not re.search(
            r"\b(what|whats|what's|who|which|how)\b[\w' ]{0,12}\bmy\b", text):
        return None  # the child is telling ("i know my name is long"), not asking
    by_kind: dict[str, list[str]] = {}
    for f in facts:  # newest first
        by_kind.setdefault(f.kind, []).append(f.value)
    for pattern, kind in _ASKS:
        if not re.search(pattern, text):
            continue
        values = by_kind.get(kind)
        if not values:
            return _untold(kind, text)
        v = values[0]
        if kind == "name":
            return f"Of course I remember! Your name is {v}."
        if kind == "age":
            if re.search(r"\bwill i be\b|\bi'?ll be\b", text) and v.isdigit():
                return f"You told me you are {v}, so on your next birthday you will be {int(v) + 1}!"
            return f"You told me you are {v} years old!"
        if kind == "pet":
            animal = re.search(r"\bmy (\w+)", text)
            wanted = [p for p in values if animal and p.split()[0] == animal.group(1)] or values
            parts = wanted[0].split(maxsplit=1)
            return f"Your {parts[0]} is called {parts[1]}!" if len(parts) == 2 else f"You have a {parts[0]}!"
        if kind.startswith("favourite_"):
            return f"Your favourite {kind.split('_', 1)[1]} is the {v}!" if kind == "favourite_animal" \
                else f"Your favourite {kind.split('_', 1)[1]} is {v}!"
        if kind == "friend":
            return f"Your friend is {v}!"
        if kind == "family":  # only the ones the child named: "how many" stays theirs to tell
            told = " and ".join(f"your {p.split()[0]} {p.split()[1]}" if len(p.split()) == 2 else p for p in values[:3])
            return f"You told me about {told}! Is there anyone else?"
        if kind == "likes":
            topic = re.search(r"\bwhat (\w+) do i", text)
            if topic and topic.group(1) not in ("do", "else"):
                return f"You told me you love {v}!"
            return f"You love {v}!"
    return None
