"""One child's conversation with the language model: persona, memory, history, the reply.

``Conversation`` is what ``companion chat`` runs for every line, and what the voice
loop calls between ASR and TTS. It reads the child's memory when it starts, puts
the persona, what it knows about the child and the recent turns into the prompt
(within a token budget), and stores every exchange once it has been said.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace

from companion.config import CompanionConfig
from companion.errors import CompanionError, ConfigError
from companion.llm.generate import Gate, GenerationResult, Generator, TokenEvent
from companion.llm.tokenizer import ChatMessage
from companion.memory.answers import answer_from_facts
from companion.memory.facts import describe, extract_facts
from companion.memory.store import Fact, MemoryStore
from companion.models.cache import ModelCache
from companion.paths import models_cache_dir
from companion.persona import Persona, cap_words, load_persona
from companion.parent import settings as parent_settings
from companion.safety.check import ANSWER, SafetyLayer, SafetyVerdict

_CHILD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")


@dataclass(frozen=True)
class ReplyTimings:
    llm_first_token_ms: float | None
    llm_total_ms: float


@dataclass(frozen=True)
class ChatReply:
    """One exchange: what the child said and what the robot answered."""

    child: str
    heard: str
    reply: str
    timings: ReplyTimings
    stop_reason: str
    prompt_tokens: int
    cached_tokens: int
    reply_tokens: int
    safety: SafetyVerdict = ANSWER

    def to_json(self) -> dict:
        return {"child": self.child, "heard": self.heard, "reply": self.reply, "timings": asdict(self.timings),
                "safety": self.safety.to_json(),
                "llm": {"stop_reason": self.stop_reason, "prompt_tokens": self.prompt_tokens,
                        "cached_tokens": self.cached_tokens, "reply_tokens": self.reply_tokens}}


def check_child_name(name: str) -> str:
    if not _CHILD_NAME.match(name):
        raise CompanionError(
            f"child name {name!r} must be 1-40 letters, digits, spaces, '.', '_' or '-'", code="CHILD_NAME_INVALID"
        )
    return name


def persona_of(config: CompanionConfig) -> Persona:
    return load_persona(config.persona.use)


def load_generator(config: CompanionConfig, cache: ModelCache | None = None) -> Generator:
    """The configured language model from the model cache, with the persona's prompt pre-computed."""
    cache = cache or ModelCache(models_cache_dir())
    prepared = cache.get(config.llm.model)
    generator = Generator(prepared.path / "onnx", config.llm.runtime())
    generator.warm([ChatMessage("system", persona_of(config).system_prompt())])
    return generator


def _fixed_reply(text: str, reason: str) -> tuple[TokenEvent, GenerationResult]:
    """A reply that does not come from the model (safety line, memory answer), in the stream's shape."""
    return (TokenEvent(token_id=-1, text=text, index=0, elapsed_s=0.0),
            GenerationResult(text=text, token_ids=(), stop_reason=reason, prompt_tokens=0, cached_tokens=0,
                             first_token_s=0.0, total_s=0.0))


@dataclass(frozen=True)
class _Exchange:
    """One exchange of the prompt history."""

    turn_id: int | None
    heard: str
    said: str
    cost: int

    def messages(self) -> list[ChatMessage]:
        return [ChatMessage("user", self.heard), ChatMessage("assistant", self.said)]


def _similar(a: str, b: str) -> bool:
    """Two replies of four words or more that share most of their words."""
    wa, wb = set(re.findall(r"[a-z']+", a.lower())), set(re.findall(r"[a-z']+", b.lower()))
    if len(wa) < 4 or len(wb) < 4:
        return False
    return len(wa & wb) / len(wa | wb) >= 0.6


#: Words of an earlier turn quoted when it is recalled.
RECALL_WORDS = 16

#: Prompt tokens an ordinary turn adds after the history (the child's words, a recalled exchange).
ORDINARY_TURN_TOKENS = 160


class Conversation:
    """One child's conversation: bounded history, memory, one reply at a time."""

    def __init__(self, generator: Generator, config: CompanionConfig, child: str,
                 memory: MemoryStore | None = None) -> None:
        self.generator = generator
        self.config = config
        self.child = check_child_name(child)
        self.persona = persona_of(config)
        self.memory = memory
        self.safety = SafetyLayer(config.safety)
        #: The input verdict of the exchange in progress (set by ``stream``, read by ``remember``).
        self.verdict: SafetyVerdict = ANSWER
        #: Prompt length of the last reply the model wrote (0 when a fixed line answered), and how much of
        #: it the prefix cache already held.
        self.last_prompt_tokens = self.last_cached_tokens = 0
        self._system = ChatMessage("system", self.persona.system_prompt())
        #: (stored turn id or None, what the child said, what the robot said, its tokens), oldest first.
        #: It is trimmed in steps (see ``_trim_history``), never by one exchange a turn: the model's
        #: prefix cache holds the history's KV, and a window sliding by one would change the prompt's
        #: start every turn and make every turn prefill the whole history again.
        self._history: deque[_Exchange] = deque()
        self._session: int | None = None
        tok = generator.tokenizer
        if len(tok.encode_chat([self._system, ChatMessage("user", "")])) + 16 > config.memory.prompt_tokens:
            raise ConfigError(f"memory.prompt_tokens ({config.memory.prompt_tokens}) is smaller than the "
                              f"persona's own prompt")
        self.parent = parent_settings.ParentSettings()
        self._purged_at = time.monotonic()
        if memory is not None:
            self._apply_parent_settings()
            self._purge()
            for t in memory.recent_turns(self.child, config.llm.history_turns):
                self._remember_locally(t.id, t.heard, t.said)

    def _remember_locally(self, turn_id: int | None, heard: str, said: str) -> None:
        """Keep an exchange in the prompt history, with its token cost counted once.

        A small model copies its own earlier replies from the history, and each copy makes the next more
        likely (`companion bench` once heard the same line 21 turns in a row). A reply that repeats one in
        the history takes that one out with it, so the prompt never shows the pattern to copy.
        """
        repeats = [e for e in self._history if _similar(e.said, said)]
        if repeats:
            for entry in repeats:
                self._history.remove(entry)
            return
        exchange = _Exchange(turn_id, heard, said, 0)
        cost = len(self.generator.tokenizer.encode_chat(exchange.messages(), add_generation_prompt=False))
        self._history.append(replace(exchange, cost=cost))
        if len(self._history) > self.config.llm.history_turns:
            self._trim_history(keep=max(1, self.config.llm.history_turns // 2))

    def _trim_history(self, *, keep: int) -> None:
        while len(self._history) > keep:
            self._history.popleft()

    # -- prompt ------------------------------------------------------------------------
    def _facts(self) -> list[Fact]:
        return [] if self.memory is None else self.memory.facts(self.child, self.config.memory.max_facts)

    def _facts_message(self, facts: list[Fact]) -> ChatMessage | None:
        """What the robot knows about the child. Changes only when a fact does, so its KV stays cached."""
        if self.memory is None:
            return None
        summaries = self.memory.summaries(self.child, 1)
        if not facts and not summaries:
            return None
        lines = []
        if facts:
            known = "; ".join(describe(f.kind, f.value) for f in reversed(facts))
            lines.append(f"Facts about the child you are talking to (about the child, not about you, "
                         f"{self.persona.name}): {known}.")
        if summaries:
            lines.append(f"Last time: {summaries[-1]}")
        return ChatMessage("system", "\n".join(lines))

    def _recall_message(self, heard: str) -> ChatMessage | None:
        """Earlier turns (outside the recent history) that match what the child just said."""
        if self.memory is None or not self.config.memory.recall_turns:
            return None
        recent = {entry.turn_id for entry in self._history if entry.turn_id is not None}
        earlier = [t for t in self.memory.search_turns(self.child, heard, self.config.memory.recall_turns + len(recent))
                   if t.id not in recent][: self.config.memory.recall_turns]
        if not earlier:
            return None
        # Only the child's words, shortened: the robot's own old answers, quoted back, make a small model
        # repeat them, and every token here is prefilled on the turn's critical path.
        return ChatMessage("system", "\n".join(f'Earlier the child said: "{cap_words(t.heard, RECALL_WORDS)}"'
                                               for t in earlier))

    def messages(self, heard: str, facts: list[Fact] | None = None) -> list[ChatMessage]:
        """Persona, facts, as much recent history as the token budget allows, recalled turns, the child's words.

        What changes least comes first so the prefix cache covers it: the facts block changes only when a
        fact does (one turn pays for it), history only grows at its end; recalled turns vary, so they sit
        last, next to the child's words.
        """
        tok = self.generator.tokenizer
        budget = self.config.memory.prompt_tokens
        facts = self._facts() if facts is None else facts
        facts_msg, recall_msg = self._facts_message(facts), self._recall_message(heard)
        user = ChatMessage("user", heard)

        def parts() -> tuple[list[ChatMessage], list[ChatMessage]]:
            return ([m for m in (self._system, facts_msg) if m is not None],
                    [m for m in (recall_msg,) if m is not None])

        head, tail = parts()
        used = len(tok.encode_chat([*head, *tail, user]))
        while used > budget and (recall_msg is not None or facts_msg is not None):
            if recall_msg is not None:  # dropped first: it varies anyway
                recall_msg = None
            else:
                facts_msg = None
            head, tail = parts()
            used = len(tok.encode_chat([*head, *tail, user]))
        if used > budget:  # a very long utterance: keep its end, which is what the child is asking
            ids = tok.encode(heard)
            keep = max(16, budget - (used - len(ids)))
            user = ChatMessage("user", tok.decode(ids[-keep:]))
            used = len(tok.encode_chat([*head, user]))
        # Room for history in an ordinary turn (a short utterance and a recalled turn or two). When the
        # history outgrows it, the oldest exchanges go until half the room is left: the next few turns
        # fit again with the same prefix.
        free = budget - len(tok.encode_chat([*head, ChatMessage("user", "")]))
        room = free - min(ORDINARY_TURN_TOKENS, free // 4)
        if sum(entry.cost for entry in self._history) > room:
            kept, total = 0, 0
            for entry in reversed(self._history):
                if total + entry.cost > (room // 2 if kept else room):  # the newest stays if it fits at all
                    break
                kept, total = kept + 1, total + entry.cost
            self._trim_history(keep=kept)
        history: list[ChatMessage] = []
        for entry in reversed(self._history):  # this turn: what fits, newest first
            if used + entry.cost > budget:
                break
            history[:0] = entry.messages()
            used += entry.cost
        return [*head, *history, *tail, user]

    def _purge(self) -> None:
        """Transcripts past the retention period (the parents' setting, else the config file's) go."""
        if self.memory is not None:
            self._purged_at = time.monotonic()
            self.memory.purge_expired(self.parent.retention_days or self.config.memory.retention_days)

    def _purge_hourly(self) -> None:
        """While the robot runs for weeks, not only at start."""
        if time.monotonic() - self._purged_at > 3600:
            self._purge()

    def _apply_parent_settings(self) -> None:
        """Read the parents' settings (changed on the dashboard) at the start of every turn."""
        if self.memory is None:
            return
        settings = parent_settings.load(self.memory)
        if settings == self.parent:
            return
        old, self.parent = self.parent, settings
        if settings.deny_topics != old.deny_topics:
            self.safety = SafetyLayer(replace(self.config.safety, deny_topics=(
                *self.config.safety.deny_topics, *settings.deny_topics)))
        if settings.persona != old.persona:
            self.persona = load_persona(settings.persona) if settings.persona else persona_of(self.config)
            self._system = ChatMessage("system", self.persona.system_prompt())

    def warm_next(self) -> int:
        """Prefill the next turn's fixed part (persona, facts, history) now, while the child is talking.

        Recalled turns and the child's words come after it, so the next turn only prefills those.
        Blocking: run it on the generator's executor. Returns the prefix length in tokens.
        """
        prefix = self.messages("", facts=self._facts())[:-1]
        return self.generator.warm(prefix)

    def prompt(self, heard: str, facts: list[Fact] | None = None) -> list[int]:
        return self.generator.tokenizer.encode_chat(self.messages(heard, facts))

    # -- reply -------------------------------------------------------------------------
    async def stream(self, heard: str, gate: Gate | None = None) -> AsyncIterator[TokenEvent | GenerationResult]:
        """The reply as it is generated (tokens, then the result). Closing it early cancels the model.

        What the child said is checked first: a redirect or an alert answers with the safety layer's
        own words (never the model's); the alert is stored for the parents by ``remember``, once the
        turn is really a turn (a reply begun while the child may still go on is not). A question about the
        child's own facts ("what is my dog called?") is answered from memory.
        """
        self._apply_parent_settings()
        self.verdict = self.safety.check_input(heard)
        self.last_prompt_tokens = self.last_cached_tokens = 0
        # A disclosure is heard and alerted whatever the hour; otherwise quiet hours and the daily
        # limit come before anything else the robot might say.
        held = None if self.verdict.action == "alert" or self.memory is None else parent_settings.gate(
            self.parent, self.memory, self.child)
        if held is not None:
            self.verdict = SafetyVerdict("answer", held)
            for item in _fixed_reply(parent_settings.LINES[held], held):
                yield item
            return
        if self.verdict.action != "answer":
            for item in _fixed_reply(self.safety.reply(self.verdict, heard), "safety"):
                yield item
            return
        facts = self._facts()  # read once: for a memory answer and for the prompt
        known = answer_from_facts(heard, facts) if facts else None
        if known is not None:
            for item in _fixed_reply(known, "memory"):
                yield item
            return
        prompt = self.prompt(heard, facts)
        self.last_prompt_tokens = len(prompt)
        self.last_cached_tokens = self.generator.prefix_cache.longest_prefix(prompt)[0]
        agen = self.generator.stream(prompt, self.config.llm.sampling(), gate=gate)
        try:
            async for item in agen:
                yield item
        finally:
            await agen.aclose()

    def clause_verdict(self, clause: str) -> SafetyVerdict:
        """The output check, for every clause before it is spoken."""
        return self.safety.check_output(clause)

    def safe_text(self, text: str) -> tuple[str, SafetyVerdict]:
        """``text`` clause by clause up to the first unsafe clause, which is replaced by a redirect line."""
        from companion.tts.clauses import ClauseSplitter

        splitter = ClauseSplitter()
        kept = []
        for clause in splitter.push(text) + splitter.flush():
            verdict = self.clause_verdict(clause)
            if verdict.action != "answer":
                kept.append(self.safety.reply(verdict, text))
                return " ".join(kept), verdict
            kept.append(clause)
        return " ".join(kept), ANSWER

    def remember(self, heard: str, said: str, *, interrupted: bool = False, talk_s: float | None = None) -> int | None:
        """Record an exchange once it has been said; returns the stored turn id (acknowledged).

        Personal information the child said is not stored (the transcript keeps a placeholder) and no
        fact is taken from an exchange the safety layer did not answer normally.
        """
        verdict = self.verdict
        if verdict.category == "personal_info":
            heard = "[personal information not stored]"
        if self.memory is None:
            self._remember_locally(None, heard, said)
            return None
        if self._session is None:
            self._session = self.memory.start_session(self.child)
        self._purge_hourly()  # here, after the reply was spoken: a purge may vacuum the database
        if verdict.action == "alert":
            self.memory.add_alert(self.child, verdict.category or "unknown", heard)
        turn_id = self.memory.add_turn(self._session, self.child, heard, said, interrupted=interrupted,
                                       meta={"safety": verdict.to_json(),
                                             **({} if talk_s is None else {"talk_s": round(talk_s, 2)})})
        self._remember_locally(turn_id, heard, said)
        if verdict.action != "answer":
            return turn_id
        for fact in extract_facts(heard):
            self.memory.add_fact(self.child, fact.kind, fact.value, turn_id)
        return turn_id

    def close(self) -> None:
        if self.memory is not None and self._session is not None:
            heard = [entry.heard for entry in list(self._history)[-3:]]
            summary = ("The child talked about: " + " / ".join(cap_words(h, 12) for h in heard)) if heard else None
            self.memory.end_session(self._session, summary)
            self._session = None

    async def reply(self, heard: str, on_token=None) -> ChatReply:
        started = time.perf_counter()
        result: GenerationResult | None = None
        async for item in self.stream(heard):
            if isinstance(item, TokenEvent):
                if on_token is not None:
                    on_token(item)
            else:
                result = item
        assert result is not None
        text = result.text.strip()
        if result.stop_reason != "safety":  # the safety layer's own lines are complete as written
            text = cap_words(text, self.persona.max_words)
        verdict = self.verdict
        if result.stop_reason != "safety":
            text, out_verdict = self.safe_text(text)
            if out_verdict.action != "answer":
                verdict = out_verdict
        self.remember(heard, text)
        first = None if result.first_token_s is None else round(result.first_token_s * 1000, 1)
        return ChatReply(
            child=self.child, heard=heard, reply=text,
            timings=ReplyTimings(llm_first_token_ms=first, llm_total_ms=round((time.perf_counter() - started) * 1000, 1)),
            stop_reason=result.stop_reason, prompt_tokens=result.prompt_tokens,
            cached_tokens=result.cached_tokens, reply_tokens=len(result.token_ids), safety=verdict,
        )

