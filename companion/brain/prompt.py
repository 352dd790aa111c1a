"""The prompt of one turn: persona, facts, recent history, recalled turns, the child's words, in a token budget.

Pure functions of their inputs (the tokenizer is deterministic): the history is an
immutable tuple, and trimming it is *returned* for the caller to adopt, so nothing
here mutates state that another thread reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from companion.llm.tokenizer import ChatMessage, ChatTokenizer
from companion.memory.facts import describe
from companion.memory.store import Fact, StoredTurn
from companion.persona import cap_words

#: Words of an earlier turn quoted when it is recalled.
RECALL_WORDS = 16

#: Prompt tokens an ordinary turn adds after the history (the child's words, a recalled exchange).
ORDINARY_TURN_TOKENS = 160


@dataclass(frozen=True)
class Exchange:
    """One exchange of the prompt history, with its token cost counted once."""

    turn_id: int | None
    heard: str
    said: str
    cost: int

    def messages(self) -> list[ChatMessage]:
        return [ChatMessage("user", self.heard), ChatMessage("assistant", self.said)]


History = tuple[Exchange, ...]


def similar(a: str, b: str) -> bool:
    """Two replies of four words or more that share most of their words."""
    wa, wb = set(re.findall(r"[a-z']+", a.lower())), set(re.findall(r"[a-z']+", b.lower()))
    if len(wa) < 4 or len(wb) < 4:
        return False
    return len(wa & wb) / len(wa | wb) >= 0.6


def with_exchange(history: History, turn_id: int | None, heard: str, said: str, tokenizer: ChatTokenizer,
                  max_turns: int) -> History:
    """``history`` with one more exchange (trimmed in steps, never by one exchange a turn).

    A small model copies its own earlier replies from the history, and each copy makes the next more
    likely (`companion bench` once heard the same line 21 turns in a row). A reply that repeats one in
    the history takes that one out with it, so the prompt never shows the pattern to copy.
    The model's prefix cache holds the history's KV: a window sliding by one would change the
    prompt's start every turn and make every turn prefill the whole history again.
    """
    repeats = [e for e in history if similar(e.said, said)]
    if repeats:
        return tuple(e for e in history if e not in repeats)
    cost = len(tokenizer.encode_chat(Exchange(turn_id, heard, said, 0).messages(), add_generation_prompt=False))
    grown = (*history, Exchange(turn_id, heard, said, cost))
    if len(grown) > max_turns:
        grown = grown[-max(1, max_turns // 2):]
    return grown


def facts_message(facts: Sequence[Fact], summary: str | None, persona_name: str) -> ChatMessage | None:
    """What the robot knows about the child. Changes only when a fact does, so its KV stays cached."""
    if not facts and not summary:
        return None
    lines = []
    if facts:
        known = "; ".join(describe(f.kind, f.value) for f in reversed(facts))
        lines.append(f"Facts about the child you are talking to (about the child, not about you, "
                     f"{persona_name}): {known}.")
    if summary:
        lines.append(f"Last time: {summary}")
    return ChatMessage("system", "\n".join(lines))


def recall_message(recalled: Sequence[StoredTurn]) -> ChatMessage | None:
    """Earlier turns that match what the child said. Only the child's words, shortened: the robot's own
    old answers, quoted back, make a small model repeat them, and every token here is prefilled on the
    turn's critical path."""
    if not recalled:
        return None
    return ChatMessage("system", "\n".join(f'Earlier the child said: "{cap_words(t.heard, RECALL_WORDS)}"'
                                           for t in recalled))


_QUESTION = re.compile(r"\?|^(?:(?:um+|uh+|erm?|so|and|but|hey|hi|ok|okay|well|pip|robot|in|on|at|for|from|of|to|"
                       r"by|with)\W+){0,3}(what|whats|what's|why|how|who|where|when|which|is|are|do|does|did|can|"
                       r"could|will|would|should|was|were|tell me)\b", re.IGNORECASE)


def looks_like_question(heard: str) -> bool:
    return bool(_QUESTION.search(heard.strip()))


#: Questions to the robot about itself, and asks to play or for a story: no fact answers them.
_NOT_FOR_FACTS = re.compile(
    r"\b(do|did|can|will|would|are|were|have|could) you (really )?(like|love|want|feel|have|play|sleep|eat|"
    r"miss|remember|think i)\b|\bhow are you\b|\bhow old are you\b|\bwhat('?s| is| are) your\b|"
    r"\bwho are you\b|\bare you (ok|okay|happy|sad|tired|a )|\b(tell|make up|read) (me |us )?(a |another )?"
    r"(story|joke|poem|riddle)\b|\b(can|could|shall) we\b|\blet'?s\b|\bdo you want to\b", re.IGNORECASE)


def asks_for_facts(heard: str) -> bool:
    """A question a true fact may answer ("why do cats purr", "can you tell me about sharks"), not one
    to the robot about itself ("do you like pizza", "how are you") or an ask to play or hear a story."""
    return looks_like_question(heard) and not _NOT_FOR_FACTS.search(heard)


def knowledge_message(cards: Sequence[str]) -> ChatMessage | None:
    """The fact cards that match what the child said, right before the child's words (grounding).

    Short: every token here is prefilled on the turn's critical path. How to use them, and what to do
    without one, is in the persona's prompt (cached)."""
    if not cards:
        return None
    return ChatMessage("system", "True facts for your answer: " + " ".join(cards))


def build_messages(tokenizer: ChatTokenizer, budget: int, system: ChatMessage, facts_msg: ChatMessage | None,
                   recall_msg: ChatMessage | None, history: History, heard: str,
                   cards_msg: ChatMessage | None = None) -> tuple[list[ChatMessage], History]:
    """Persona, facts, as much recent history as the budget allows, recalled turns, the child's words;
    and the history as it should be kept from now on.

    What changes least comes first so the prefix cache covers it: the facts block changes only when a
    fact does (one turn pays for it), history only grows at its end; recalled turns and fact cards vary,
    so they sit last, next to the child's words.
    """
    user = ChatMessage("user", heard)

    def parts() -> tuple[list[ChatMessage], list[ChatMessage]]:
        return ([m for m in (system, facts_msg) if m is not None],
                [m for m in (recall_msg, cards_msg) if m is not None])

    head, tail = parts()
    used = len(tokenizer.encode_chat([*head, *tail, user]))
    while used > budget and (recall_msg is not None or facts_msg is not None or cards_msg is not None):
        if recall_msg is not None:  # dropped first: it varies anyway
            recall_msg = None
        elif facts_msg is not None:
            facts_msg = None
        else:
            cards_msg = None
        head, tail = parts()
        used = len(tokenizer.encode_chat([*head, *tail, user]))
    if used > budget:  # a very long utterance: keep its end, which is what the child is asking
        ids = tokenizer.encode(heard)
        keep = max(16, budget - (used - len(ids)))
        user = ChatMessage("user", tokenizer.decode(ids[-keep:]))
        used = len(tokenizer.encode_chat([*head, user]))
    # Room for history in an ordinary turn (a short utterance and a recalled turn or two). When the
    # history outgrows it, the oldest exchanges go until half the room is left: the next few turns
    # fit again with the same prefix.
    free = budget - len(tokenizer.encode_chat([*head, ChatMessage("user", "")]))
    room = free - min(ORDINARY_TURN_TOKENS, free // 4)
    if sum(entry.cost for entry in history) > room:
        kept, total = 0, 0
        for entry in reversed(history):
            if total + entry.cost > (room // 2 if kept else room):  # the newest stays if it fits at all
                break
            kept, total = kept + 1, total + entry.cost
        history = history[len(history) - kept:] if kept else ()
    shown: list[ChatMessage] = []
    for entry in reversed(history):  # this turn: what fits, newest first
        if used + entry.cost > budget:
            break
        shown[:0] = entry.messages()
        used += entry.cost
    return [*head, *shown, *tail, user], history
