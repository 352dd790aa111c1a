"""The turn's policy: a pure function of what the child said and a snapshot of state, returning a plan.

Nothing here reads a database, a clock or another stage's attributes: ``TurnContext`` is
read once per turn (through the memory worker) and ``plan_turn`` decides. The decision
is *returned* as a frozen ``TurnPlan``: a fixed line (a safety line, the parents' quiet
hours or daily limit, an answer from memory) or a prompt for the model, plus the guards
its words must pass and what to remember of the exchange.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property

from companion.brain.prompt import (History, asks_for_facts, build_messages, facts_message, knowledge_message,
                                    looks_like_question, recall_message)
from companion.llm.tokenizer import ChatMessage, ChatTokenizer
from companion.memory.answers import answer_from_facts
from companion.memory.store import Fact, StoredTurn
from companion.parent.settings import LINES, ParentSettings, gate
from companion.persona import Persona, cap_words
from companion.brain.care import caring_line
from companion.safety.check import EMOTIONAL, SafetyLayer, SafetyVerdict

#: What is stored instead of personal information the child said (an address, a phone number).
PERSONAL_INFO_PLACEHOLDER = "[personal information not stored]"


@dataclass(frozen=True)
class TurnContext:
    """Everything a turn's decision depends on, read once at the start of the turn."""

    child: str
    parent: ParentSettings
    #: The child's facts, newest first.
    facts: tuple[Fact, ...] = ()
    #: The last session's summary.
    summary: str | None = None
    #: The facts the prompt's facts block shows (None: ``facts``). A fact just learned is already in the
    #: history, in the child's own words: the block takes it when the history is next trimmed
    #: (``Conversation._facts_for_prompt``), so learning it does not re-prefill the history after the block.
    prompt_facts: tuple[Fact, ...] | None = None
    #: Talk time today (for the daily limit), seconds.
    talk_s_today: float = 0.0
    #: Earlier turns (outside the recent history) that match what the child said.
    recalled: tuple[StoredTurn, ...] = ()
    #: The recent exchanges kept for the prompt.
    history: History = ()
    #: Fact cards from the knowledge base that match what the child said (text only, best first).
    cards: tuple[str, ...] = ()
    #: The best card's similarity to what the child said (0 without a card).
    card_score: float = 0.0
    #: The robot's last replies in this session, newest last (none of their n-grams is said again).
    recent_said: tuple[str, ...] = ()
    #: Local time the turn began (quiet hours).
    now: dt.datetime = dt.datetime(2000, 1, 1, 12)
    #: A voice no voiceprint knows (nothing of any child's memory is used).
    guest: bool = False


@dataclass(frozen=True)
class Brief:
    """The fixed inputs of the policy for a session: who the robot is and which checks apply."""

    persona: Persona
    safety: SafetyLayer
    tokenizer: ChatTokenizer
    #: Tokens the whole prompt may use.
    prompt_tokens: int
    #: A question whose best card scores at least this gets the card's words (``KnowledgeConfig``);
    #: above 1.0 the card only grounds the model.
    card_answer_at: float = 2.0

    def system(self) -> ChatMessage:
        return ChatMessage("system", self.persona.system_prompt())

    @cached_property
    def recital(self) -> tuple[tuple[int, ...], ...]:
        """The persona's description, style and favourite topics as the system prompt writes them, as token
        ids: no n-gram of them is said (``TurnPlan.avoid``). Made to go on after "My name is Pip.", the model
        said "I am a small, kind and cheerful robot friend who lives with the family", its prompt word for
        word."""
        texts = (self.persona.description, self.persona.style, ", ".join(self.persona.favourite_topics))
        return tuple(tuple(self.tokenizer.encode(lead + text)) for text in texts for lead in ("", " "))


@dataclass(frozen=True)
class TurnPlan:
    """What to do with one thing the child said."""

    #: What the child said.
    heard: str
    #: The input check's verdict (for a parents' gate: action "answer", category "quiet_hours"/"daily_limit").
    verdict: SafetyVerdict
    #: "model", or the source of the fixed line: "safety", "care" (a caring line for a sad, scared or
    #: grieving child), "quiet_hours", "daily_limit", "memory", "card" (a fact card that answers the
    #: question, in its own words).
    kind: str
    #: The words to say when ``kind != "model"``: reviewed text, never the model's.
    line: str | None
    #: The model's prompt, token ids (``kind == "model"``).
    prompt: tuple[int, ...]
    #: The prompt history as it is kept from now on (trimmed in steps for the prefix cache).
    history: History
    #: The check every clause of the model's reply must pass.
    guard: SafetyLayer
    #: The persona's word cap for a reply.
    max_words: int
    #: Speaker volume, 0-1 (the parents' setting).
    volume: float
    #: Facts may be learned from this exchange (only from one answered normally).
    learn_facts: bool
    #: An alert for the parents, by category (a disclosure, self-harm).
    alert: str | None
    #: Token ids of the last replies: the model says none of their n-grams again.
    avoid: tuple[tuple[int, ...], ...] = ()
    #: The chat messages ``prompt`` encodes (``kind == "model"``).
    messages: tuple[ChatMessage, ...] = ()
    #: Whose turn it is (a remote brain answers for this child; ``guest``: for nobody's memory).
    child: str = ""
    guest: bool = False
    #: How many times an ordinary reply's length this one may be (its word cap is already scaled; the
    #: model's token limit is scaled by ``reply_chunks``): a story asked for gets room to be told.
    reply_scale: float = 1.0
    #: The reply should end by asking the child something (``asks_back``): the model's end-of-turn token
    #: waits for a question mark for this many tokens (0: it may end anywhere; ``SamplingParams.ask_within``).
    ask_within: int = 0

    @property
    def stored_heard(self) -> str:
        """The child's words as the transcript keeps them (personal information is not stored)."""
        return PERSONAL_INFO_PLACEHOLDER if self.verdict.category == "personal_info" else self.heard


#: Words that point back at something said before ("how many legs does it have"): the card that the
#: words alone find may be about something else, so the model answers with the conversation in view.
_REFERS_BACK = re.compile(r"\b(it|its|they|them|their|that|those|these|he|she|him|her)\b", re.IGNORECASE)


#: An ask for a story ("tell me a story about a dragon", "can you make up a story"): the robot's favourite
#: thing to do gets room: at a 40-word cap the 1.5B model's "Sure! Here's a story about a dragon:" was all
#: the child heard.
_STORY = re.compile(r"\b(tell|make up|read|say|do)( me| us)?( a| another| one more| the)?( \w+){0,2} (story|fairy ?tale)\b|"
                    r"\b(story|stories) (about|of|with)\b|\bonce upon a time\b", re.IGNORECASE)
STORY_SCALE = 2.0


def asks_for_story(heard: str) -> bool:
    return bool(_STORY.search(heard))


#: The end of a conversation or a thank-you: nothing to ask back.
_CLOSING = re.compile(r"\b(good ?bye|bye|see you|good ?night|night night|thank(s| you)|gotta go|have to go|"
                      r"i'?m going (now|to bed|to sleep))\b", re.IGNORECASE)
#: Tokens a reply that should ask back may run before it may end without a question (about 20 words).
ASK_WITHIN_TOKENS = 28


def asks_back(heard: str) -> bool:
    """Whether the reply should ask the child something back: news, a hello, an ask to play; not a question
    (the answer is the point: made to go on after "My name is Pip.", the model went on "I am a robot friend
    who lives in the house and helps people with their questions. What can I do for you today?"), a story
    (the story is), or a goodbye or a thank-you."""
    return bool(heard.strip()) and not looks_like_question(heard) and not asks_for_story(heard) \
        and not _CLOSING.search(heard)


def card_answers(heard: str, ctx: TurnContext, brief: Brief) -> bool:
    """The best fact card answers this question as it is written: a question for facts, a card close
    enough (``card_answer_at``), and nothing in it that points back at earlier turns."""
    return (bool(ctx.cards) and ctx.card_score >= brief.card_answer_at and asks_for_facts(heard)
            and not (ctx.history and _REFERS_BACK.search(heard)))


def plan_turn(heard: str, ctx: TurnContext, brief: Brief) -> TurnPlan:
    """Parent gate, input safety, a caring line, an answer from memory, a fact card that answers the
    question, or a prompt; first match wins in that order, except that a disclosure is heard and alerted
    whatever the hour."""
    verdict = brief.safety.check_input(heard)
    common = dict(heard=heard, history=ctx.history, guard=brief.safety, max_words=brief.persona.max_words,
                  child=ctx.child, guest=ctx.guest,
                  volume=ctx.parent.volume / 100, alert=verdict.category if verdict.action == "alert" else None)
    held = None if verdict.action == "alert" else gate(ctx.parent, ctx.talk_s_today, ctx.child, ctx.now)
    if held is not None:
        return TurnPlan(verdict=SafetyVerdict("answer", held), kind=held, line=LINES[held], prompt=(),
                        learn_facts=False, **common)
    if verdict.action != "answer":
        return TurnPlan(verdict=verdict, kind="safety", line=brief.safety.reply(verdict, heard), prompt=(),
                        learn_facts=False, **common)
    if verdict.category == EMOTIONAL:
        # A sad, scared or grieving child hears reviewed words, not a small model's (brain/care.py).
        return TurnPlan(verdict=verdict, kind="care", line=caring_line(heard, ctx.child), prompt=(),
                        learn_facts=True, **common)
    known = answer_from_facts(heard, list(ctx.facts))
    if known is not None:
        return TurnPlan(verdict=verdict, kind="memory", line=known, prompt=(), learn_facts=True, **common)
    if card_answers(heard, ctx, brief):
        line = cap_words(ctx.cards[0], brief.persona.max_words)
        # Reviewed text, and still checked as every reply is: a parent's denied topic may be in it.
        if brief.safety.check_output(line, heard=heard).action == "answer":
            return TurnPlan(verdict=verdict, kind="card", line=line, prompt=(), learn_facts=True, **common)
    messages, history = prompt_messages(heard, ctx, brief)
    prompt = tuple(brief.tokenizer.encode_chat(messages))
    avoid = tuple(tuple(brief.tokenizer.encode(said)) for said in ctx.recent_said if said) + brief.recital
    scale = STORY_SCALE if asks_for_story(heard) else 1.0
    return TurnPlan(verdict=verdict, kind="model", line=None, prompt=prompt, learn_facts=True, avoid=avoid,
                    messages=tuple(messages), reply_scale=scale,
                    ask_within=ASK_WITHIN_TOKENS if asks_back(heard) else 0,
                    **{**common, "history": history, "max_words": round(brief.persona.max_words * scale)})


def prompt_messages(heard: str, ctx: TurnContext, brief: Brief) -> tuple[list[ChatMessage], History]:
    """The chat messages of the turn and the history to keep (see brain/prompt.py)."""
    def build(facts: tuple[Fact, ...]) -> tuple[list[ChatMessage], History]:
        return build_messages(brief.tokenizer, brief.prompt_tokens, brief.system(),
                              facts_message(facts, ctx.summary, brief.persona.name), recall_message(ctx.recalled),
                              ctx.history, heard, knowledge_message(ctx.cards) if heard else None)

    if ctx.prompt_facts is None:
        return build(ctx.facts)
    messages, history = build(ctx.prompt_facts)
    if history != ctx.history:  # trimmed: the history is prefilled anew, the facts block takes the new facts now
        messages, history = build(ctx.facts)
    return messages, history


def prefix_messages(ctx: TurnContext, brief: Brief) -> list[ChatMessage]:
    """The next turn's fixed part (persona, facts, history), to prefill while the child talks."""
    return prompt_messages("", ctx, brief)[0][:-1]
