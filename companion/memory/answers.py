"""Questions a child asks about themselves, answered from stored facts.

A small model often mixes up "my" and "your" ("Do you remember my name?" ->
"my name is Pip"). When the child asks about something the robot has a fact
for, the answer comes from the fact, so memory is right every time. Anything
else, or a question without a stored answer, goes to the language model.
"""

from __future__ import annotations

import re

from companion.memory.store import Fact

_ASKS = [
    (r"\b(remember|know|what'?s|what is|say|tell me)\b.*\bmy name\b|\bwho am i\b", "name"),
    (r"\bhow old am i\b|\b(remember|know|what'?s|what is)\b.*\bmy age\b", "age"),
    (r"\bmy (dog|cat|puppy|kitten|hamster|fish|goldfish|rabbit|bunny|bird|parrot|turtle|pony|horse|pet)\b.*"
     r"\b(called|name)\b|\bwhat'?s my (dog|cat|pet)'?s? name\b|\bwhat (pet|animal) do i have\b", "pet"),
    (r"\b(what|which)( is| was|'s)? my fav(ou?rite)? (animal)\b", "favourite_animal"),
    (r"\b(what|which)( is| was|'s)? my fav(ou?rite)? (colou?r)\b", "favourite_colour"),
    (r"\b(what|which)( is| was|'s)? my fav(ou?rite)? (food)\b", "favourite_food"),
    (r"\bwho is my (best )?friend\b|\bmy (best )?friend'?s name\b", "friend"),
    (r"\bwhat (\w+ )?do i (love|like)\b|\bwhat do i really (love|like)\b", "likes"),
]


def answer_from_facts(heard: str, facts: list[Fact]) -> str | None:
    text = heard.lower()
    if "?" not in heard and not re.search(r"\b(remember|what|who|how|which)\b", text):
        return None
    by_kind: dict[str, list[str]] = {}
    for f in facts:  # newest first
        by_kind.setdefault(f.kind, []).append(f.value)
    for pattern, kind in _ASKS:
        if not re.search(pattern, text):
            continue
        values = by_kind.get(kind)
        if not values:
            return None
        v = values[0]
        if kind == "name":
            return f"Of course I remember! Your name is {v}."
        if kind == "age":
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
        if kind == "likes":
            topic = re.search(r"\bwhat (\w+) do i", text)
            if topic and topic.group(1) not in ("do", "else"):
                return f"You told me you love {v}!"
            return f"You love {v}!"
    return None
