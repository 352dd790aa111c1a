"""Fact extraction by the language model, held to a small JSON schema (for comparison with the rules).

The model is asked for one JSON object with a fixed set of keys; anything that is
not valid JSON, or has other keys or non-string values, is dropped. `companion
bench facts` measures this against the rules on a labelled set.
"""

from __future__ import annotations

import json
import re

from companion.llm.generate import Generator
from companion.llm.sampling import SamplingParams
from companion.llm.tokenizer import ChatMessage
from companion.memory.facts import ExtractedFact

SCHEMA_KEYS = ("name", "age", "pet", "favourite_animal", "favourite_colour", "favourite_food", "likes", "dislikes",
               "fears", "friend", "family")
PROMPT = (
    "Extract the facts a child states about themselves in the message. Reply with exactly one JSON object and "
    "nothing else. Allowed keys: " + ", ".join(SCHEMA_KEYS) + ". Values are short strings (pet as 'animal name', "
    "family as 'relation name', age as digits). Leave out keys the message does not state. For a question or a "
    "message without facts reply {}."
)


def extract_with_model(generator: Generator, text: str) -> list[ExtractedFact]:
    ids = generator.tokenizer.encode_chat([ChatMessage("system", PROMPT), ChatMessage("user", text)])
    result = generator.generate(ids, SamplingParams(max_new_tokens=150, temperature=0.0, repetition_penalty=1.0))
    match = re.search(r"\{.*\}", result.text, re.S)
    if not match:
        return []
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    facts = []
    for key, value in data.items():
        if key not in SCHEMA_KEYS or value in (None, "", []):
            continue
        if isinstance(value, (int, float)) and key == "age":
            value = str(int(value))
        if not isinstance(value, str):
            continue
        facts.append(ExtractedFact(key, value.strip()))
    return facts
