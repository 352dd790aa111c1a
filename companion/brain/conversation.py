"""One child's session: the turn's snapshot, its plan, and what was said, remembered.

``Conversation`` is what ``companion chat`` runs for every line and what the voice loop
asks between ASR and TTS. It never decides inside a stream and never hands a verdict
back through an attribute: ``plan`` returns a ``TurnPlan`` (brain/plan.py), the guard
turns the model's tokens into ``ReplyChunk``s (brain/guard.py), and ``remember`` takes
the ``SpokenReply``. Every database access goes through the memory worker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from dataclasses import asdict, dataclass, replace

from companion.brain.guard import reply_chunks
from companion.brain.plan import Brief, TurnContext, TurnPlan, plan_turn, prefix_messages, prompt_messages
from companion.brain.prompt import History, asks_for_facts, with_exchange
from companion.config import CompanionConfig
from companion.errors import CompanionError, ConfigError
from companion.knowledge.index import Knowledge
from companion.safety.classifier import SafetyClassifier
from companion.llm.generate import Generator, GenerationResult, TokenEvent
from companion.llm.tokenizer import ChatMessage
from companion.memory.facts import extract_facts
from companion.memory.store import Fact, MemoryStore
from companion.memory.worker import MemoryWorker
from companion.models.cache import ModelCache
from companion.parent import settings as parent_settings
from companion.paths import models_cache_dir
from companion.persona import Persona, cap_words, load_persona
from companion.safety.check import EMOTIONAL, SafetyLayer, SafetyVerdict

_CHILD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")

#: The robot's own last replies whose n-grams it does not say again: a whole 10-turn conversation
#: (held-out set: "Let me know if you have any other questions." came back 5 turns later with 4).
RECENT_SAID = 10

#: Transcripts past the retention period are purged at most this often while the robot runs.
PURGE_EVERY_S = 3600.0
#: Sad, scared or worried turns in one day after which the parents get a gentle note (not an alarm).
DISTRESS_TURNS = 3
#: The alerts table's category for that note (the dashboard shows it as a note).
WELLBEING_NOTE = "wellbeing"


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


@dataclass(frozen=True)
class SpokenReply:
    """What the robot actually said to a plan (cut short when the child interrupted)."""

    plan: TurnPlan
    said: str
    interrupted: bool = False
    #: The output check's verdict when it stopped the reply.
    blocked: SafetyVerdict | None = None
    #: Talk time of the exchange (the child's first word to the reply's end), for the daily limit.
    talk_s: float | None = None

    @property
    def verdict(self) -> SafetyVerdict:
        """The verdict recorded for the turn: the output check's when it stopped the reply, else the input's."""
        return self.blocked or self.plan.verdict


@dataclass(frozen=True)
class ReplyTimings:
    llm_first_token_ms: float | None
    llm_total_ms: float


@dataclass(frozen=True)
class ChatReply:
    """One exchange of ``companion chat``: what the child said and what the robot answered."""

    child: str
    heard: str
    reply: str
    timings: ReplyTimings
    stop_reason: str
    prompt_tokens: int
    cached_tokens: int
    reply_tokens: int
    safety: SafetyVerdict

    def to_json(self) -> dict:
        return {"child": self.child, "heard": self.heard, "reply": self.reply, "timings": asdict(self.timings),
                "safety": self.safety.to_json(),
                "llm": {"stop_reason": self.stop_reason, "prompt_tokens": self.prompt_tokens,
                        "cached_tokens": self.cached_tokens, "reply_tokens": self.reply_tokens}}


def _read_context(store: MemoryStore, child: str, heard: str, recent_ids: frozenset[int], recall: int,
                  max_facts: int, now: dt.datetime, guest: bool = False) -> dict:
    """Runs on the memory worker: the parts of a ``TurnContext`` that live in the database. A guest's
    gets the parents' settings and today's talk time only: no facts, no summary, no earlier turns."""
    parent = parent_settings.load(store)
    if guest:
        return dict(parent=parent, facts=(), summary=None, recalled=(),
                    talk_s_today=store.talk_seconds(child, parent_settings.start_of_today(now)))
    summaries = store.summaries(child, 1)
    recalled = ()
    if heard and recall:
        recalled = tuple(t for t in store.search_turns(child, heard, recall + len(recent_ids))
                         if t.id not in recent_ids)[:recall]
    return dict(parent=parent, facts=tuple(store.facts(child, max_facts)), summary=summaries[-1] if summaries else None,
                talk_s_today=store.talk_seconds(child, parent_settings.start_of_today(now)), recalled=recalled)


def _write_exchange(store: MemoryStore, child: str, session: int | None, spoken: SpokenReply,
                    purge_days: float | None, learn: bool = True) -> tuple[int, int]:
    """Runs on the memory worker: the alert, the turn, its facts (``learn``: not a guest's); one purge
    after the reply when due."""
    plan = spoken.plan
    if session is None:
        session = store.start_session(child)
    if purge_days is not None:  # here, after the reply was spoken: a purge may vacuum the database
        store.purge_expired(purge_days)
    if plan.alert is not None:
        store.add_alert(child, plan.alert, plan.stored_heard)
    meta = {"safety": spoken.verdict.to_json(), **({} if spoken.talk_s is None else {"talk_s": round(spoken.talk_s, 2)})}
    turn_id = store.add_turn(session, child, plan.stored_heard, spoken.said, interrupted=spoken.interrupted, meta=meta)
    if spoken.verdict.category == EMOTIONAL:
        midnight = dt.datetime.combine(dt.date.today(), dt.time()).timestamp()
        if store.count_turns_since(child, midnight, safety_category=EMOTIONAL) == DISTRESS_TURNS:
            # Once a day, the third time: a gentle note for the parents, not an alarm.
            store.add_alert(child, WELLBEING_NOTE, plan.stored_heard)
    if learn and plan.learn_facts and spoken.blocked is None:
        for fact in extract_facts(plan.heard):
            store.add_fact(child, fact.kind, fact.value, turn_id)
    return session, turn_id


class Conversation:
    """One child's conversation: bounded history, memory through its worker, one turn at a time.

    ``guest``: someone whose voice no voiceprint knows (speaker/household.py): their turns are kept
    under ``child`` for the transcript and the parents' alerts, but nothing of any child's memory is
    read into their prompt and nothing they say is stored as a fact."""

    def __init__(self, model: Generator, config: CompanionConfig, child: str,
                 memory: MemoryStore | MemoryWorker | None = None, knowledge: Knowledge | None = None,
                 classifier: SafetyClassifier | None = None, *, guest: bool = False) -> None:
        self.model = model
        self.guest = guest
        self.knowledge = knowledge
        #: The safety layer's classifier by meaning (None: lexicon and profanity model only).
        self.classifier = classifier
        self.config = config
        self.child = check_child_name(child)
        self._own_worker = isinstance(memory, MemoryStore)
        self.memory: MemoryWorker | None = MemoryWorker(memory) if isinstance(memory, MemoryStore) else memory
        self._brief = self._make_brief(parent_settings.ParentSettings())
        self._parent = parent_settings.ParentSettings()
        tok = model.tokenizer
        if len(tok.encode_chat([self._brief.system(), ChatMessage("user", "")])) + 16 > config.memory.prompt_tokens:
            raise ConfigError(f"memory.prompt_tokens ({config.memory.prompt_tokens}) is smaller than the "
                              f"persona's own prompt")
        #: Recent exchanges, oldest first; replaced whole (never mutated), on the event loop only.
        self._history: History = ()
        #: The robot's last replies of this session (bounded), whatever the history kept of them.
        self._said: tuple[str, ...] = ()
        self._session: int | None = None
        #: The facts block as last shown: (facts, summary, the history at the last look).
        self._facts_shown: tuple[tuple[Fact, ...], str | None, History] | None = None
        self._started = False
        self._purged_at = time.monotonic()

    @property
    def persona(self) -> Persona:
        return self._brief.persona

    def _make_brief(self, parent: parent_settings.ParentSettings) -> Brief:
        safety = SafetyLayer(replace(self.config.safety, deny_topics=(*self.config.safety.deny_topics,
                                                                       *parent.deny_topics)), self.classifier)
        persona = load_persona(parent.persona) if parent.persona else persona_of(self.config)
        return Brief(persona, safety, self.model.tokenizer, self.config.memory.prompt_tokens,
                     self.config.knowledge.answer_similarity)

    def _adopt(self, parent: parent_settings.ParentSettings) -> Brief:
        """The parents' settings of this turn (changed on the dashboard): checks and persona follow them."""
        if parent != self._parent:
            old, self._parent = self._parent, parent
            if (parent.deny_topics, parent.persona) != (old.deny_topics, old.persona):
                self._brief = self._make_brief(parent)
        return self._brief

    def _retention_days(self) -> float:
        return self._parent.retention_days or self.config.memory.retention_days

    async def start(self) -> None:
        """Read the child's recent turns into the history and purge expired transcripts (once)."""
        if self._started:
            return
        self._started = True
        if self.memory is None:
            return

        def read(store: MemoryStore) -> tuple:
            parent = parent_settings.load(store)
            store.purge_expired(parent.retention_days or self.config.memory.retention_days)
            if self.guest:  # another guest's words are not this one's history
                return parent, ()
            return parent, tuple((t.id, t.heard, t.said) for t in store.recent_turns(self.child,
                                                                                   self.config.llm.history_turns))

        parent, turns = await self.memory.call(read)
        self._adopt(parent)
        history: History = ()
        for turn_id, heard, said in turns:
            history = await asyncio.to_thread(with_exchange, history, turn_id, heard, said, self.model.tokenizer,
                                              self.config.llm.history_turns)
        self._history = history

    async def context(self, heard: str, history: History | None = None) -> TurnContext:
        """The snapshot a turn is decided on: the database's part and the fact cards, read side by side.
        ``history``: the one the turn will have (``warm_next``: with the exchange still being said)."""
        await self.start()
        now = dt.datetime.now()
        history = self._history if history is None else history
        cards_task = None
        if self.knowledge is not None and heard:
            cards_task = asyncio.ensure_future(asyncio.to_thread(self.knowledge.find, heard,
                                                                 question=asks_for_facts(heard)))
        stored: dict = {"parent": self._parent}
        try:
            if self.memory is not None:
                recent = frozenset(e.turn_id for e in history if e.turn_id is not None)
                stored = await self.memory.call(_read_context, self.child, heard, recent,
                                                self.config.memory.recall_turns, self.config.memory.max_facts, now,
                                                self.guest)
            found = await cards_task if cards_task is not None else ()
        finally:
            if cards_task is not None and not cards_task.done():
                cards_task.cancel()
        prompt_facts = self._facts_for_prompt(stored.get("facts", ()), stored.get("summary"), history)
        return TurnContext(child=self.child, history=history, now=now, cards=tuple(r.card.text for r in found),
                           card_score=found[0].score if found else 0.0, prompt_facts=prompt_facts,
                           recent_said=self._said, guest=self.guest, **stored)

    def _facts_for_prompt(self, facts: tuple[Fact, ...], summary: str | None, history: History) -> tuple[Fact, ...]:
        """The facts the prompt shows: the last shown while the history only grew since and the new facts
        only add to them; else (the history trimmed, a fact erased or changed, a new summary) ``facts``.

        The facts block sits before the history, so a change to it re-prefills the whole history after it
        (~250 tokens, ~3 s on two cores: `companion bench` heard "Can you tell me a story about a dragon?"
        185 tokens late after "I have a puppy called Biscuit"). A fact learned from this conversation is in
        the history in the child's words until a trim, which re-prefills the history anyway: the block
        takes it then. An erased or corrected fact leaves the prompt at once."""
        held = self._facts_shown
        if held is not None:
            shown, shown_summary, seen = held
            kept = {(f.kind, f.value) for f in facts}
            grew = len(history) >= len(seen) and all((a.heard, a.said) == (b.heard, b.said)
                                                     for a, b in zip(history, seen))  # turn ids come later
            if summary == shown_summary and grew and all((f.kind, f.value) in kept for f in shown):
                self._facts_shown = (shown, summary, history)  # grew since the last look: not trimmed
                return shown
        self._facts_shown = (facts, summary, history)
        return facts

    async def plan(self, heard: str) -> TurnPlan:
        """Decide the turn: a fixed line or a prompt (pure policy, run off the loop: it tokenises)."""
        ctx = await self.context(heard)
        brief = self._adopt(ctx.parent)
        return await asyncio.to_thread(plan_turn, heard, ctx, brief)

    def ends_here(self, plan: TurnPlan) -> asyncio.Future[float] | None:
        """The model's probability that the child's words end where they do (``Generator.ends_here``),
        queued on the model's worker now, so it runs before the reply that follows (whose prefill it
        does, up to the end of the words). None for a fixed line, or a model that cannot tell."""
        ends = getattr(self.model, "aends_here", None)
        if plan.kind != "model" or not plan.messages or ends is None:
            return None
        tok = self.model.tokenizer
        ids = tok.encode_open(plan.messages)
        if ids and tok.decode(ids[-1:]) == ".":  # Whisper's full stop is no evidence: "The best day ever was."
            ids = ids[:-1]
        if not ids or tuple(ids) != plan.prompt[:len(ids)]:
            return None
        return ends(ids, plan.prompt)

    async def messages(self, heard: str) -> list[ChatMessage]:
        """The chat messages a model turn for ``heard`` would get (for inspection: tests, ``bench memory``)."""
        ctx = await self.context(heard)
        messages, _history = await asyncio.to_thread(prompt_messages, heard, ctx, self._adopt(ctx.parent))
        return messages

    async def remember(self, spoken: SpokenReply) -> int | None:
        """Record an exchange once it has been said; returns the stored turn id once it is durable.

        Personal information is not stored (the transcript keeps a placeholder); no fact is taken from
        an exchange the safety layer did not answer normally.
        """
        plan = spoken.plan
        turn_id = None
        if self.memory is not None:
            due = time.monotonic() - self._purged_at > PURGE_EVERY_S
            if due:
                self._purged_at = time.monotonic()
            self._session, turn_id = await self.memory.call(
                _write_exchange, self.child, self._session, spoken, self._retention_days() if due else None,
                not self.guest)
        if spoken.said:
            self._said = (*self._said, spoken.said)[-RECENT_SAID:]
        if plan.kind == "safety" or spoken.blocked is not None:
            # A redirected exchange stays in the transcript but never in the prompt: "your name is Zorg,
            # say it!" there made the 1.5B model answer the next "what is your name?" with "Zorg".
            self._history = plan.history
            return turn_id
        self._history = await asyncio.to_thread(with_exchange, plan.history, turn_id, plan.stored_heard,
                                                spoken.said, self.model.tokenizer, self.config.llm.history_turns)
        return turn_id

    async def warm_next(self, expected: SpokenReply | None = None) -> int:
        """Prefill the next turn's fixed part (persona, facts, history) while the child is talking.

        Recalled turns and the child's words come after it, so the next turn only prefills those.
        With ``expected`` (the reply the robot is about to finish saying), the history is the one
        ``remember`` will make of it: the loop calls this while the reply is still playing, so the
        exchange just had (~60-160 tokens; the old prompt had the fact cards between the history and
        it) is in the cache before the child answers. Returns the prefix length in tokens.
        """
        history = None
        if expected is not None and expected.plan.kind != "safety" and expected.blocked is None:
            plan = expected.plan
            history = await asyncio.to_thread(with_exchange, plan.history, None, plan.stored_heard, expected.said,
                                              self.model.tokenizer, self.config.llm.history_turns)
        ctx = await self.context("", history)  # the facts block as that history will show it (a trim: anew)
        brief = self._adopt(ctx.parent)
        prefix = await asyncio.to_thread(prefix_messages, ctx, brief)
        return await self.model.prefill(prefix, pin=self.child)  # kept while a sibling talks

    async def prefill_heard_so_far(self, heard: str) -> int:
        """Prefill the prompt that the child's words so far begin, while the child is still talking.

        The words' fact cards come before them in the prompt (brain/prompt.py), so when the finished
        sentence finds the same cards, the turn prefills only its last words: at ~12 ms a token on 2 cores
        the cards (~30-60 tokens) are most of a turn's prefill. The last word may be cut off: it is left
        out. Nothing is decided or stored here; a fixed line (safety, quiet hours...) prefills nothing.
        Returns the tokens now cached."""
        words = heard.split()
        if len(words) < 2:
            return 0
        partial = " ".join(words[:-1])
        ctx = await self.context(partial)
        brief = self._adopt(ctx.parent)
        plan = await asyncio.to_thread(plan_turn, partial, ctx, brief)
        if plan.kind != "model":
            return 0
        ids = await asyncio.to_thread(self.model.tokenizer.encode_open, plan.messages)
        return await self.model.prefill_ids(ids)

    async def close(self) -> None:
        """End the session with a short summary (the last database write), then stop an own worker."""
        if self.memory is not None and self._session is not None:
            heard = [entry.heard for entry in self._history[-3:]]
            summary = ("The child talked about: " + " / ".join(cap_words(h, 12) for h in heard)) if heard else None
            await self.memory.call(MemoryStore.end_session, self._session, summary)
            self._session = None
        if self.memory is not None and self._own_worker:
            self.memory.close()

    async def reply(self, heard: str, on_token=None, on_chunk=None) -> ChatReply:
        """One whole exchange without audio (``companion chat``, evaluations, the Wyoming ``handle``): the
        same plan, guard and memory as the voice loop. ``await on_chunk(text)`` gets each piece of the reply
        once it has passed the output check, as the loop would speak it."""
        started = time.perf_counter()
        plan = await self.plan(heard)
        seen: dict = {"tokens": 0, "first": None, "result": None, "cached": 0}

        def observe(item: TokenEvent | GenerationResult) -> None:
            if isinstance(item, TokenEvent):
                seen["tokens"] += 1
                seen["cached"] = item.cached_tokens
                seen["first"] = seen["first"] if seen["first"] is not None else item.elapsed_s
                if on_token is not None:
                    on_token(item)
            else:
                seen["result"] = item

        chunks = []
        async for chunk in reply_chunks(plan, self.model, self.config.llm.sampling(), observe=observe):
            chunks.append(chunk)
            if on_chunk is not None and chunk.text:
                await on_chunk(chunk.text)
        blocked = next((c.blocked for c in chunks if c.blocked is not None), None)
        text = " ".join(c.text for c in chunks)
        spoken = SpokenReply(plan, text, blocked=blocked)
        await self.remember(spoken)
        result: GenerationResult | None = seen["result"]
        stop = plan.kind if plan.kind != "model" else ("blocked" if blocked else
                                                      result.stop_reason if result else "capped")
        first = None if seen["first"] is None else round(seen["first"] * 1000, 1)
        return ChatReply(
            child=self.child, heard=heard, reply=text,
            timings=ReplyTimings(llm_first_token_ms=first, llm_total_ms=round((time.perf_counter() - started) * 1000, 1)),
            stop_reason=stop, prompt_tokens=len(plan.prompt), cached_tokens=result.cached_tokens if result else seen["cached"],
            reply_tokens=seen["tokens"], safety=spoken.verdict,
        )
