"""The generation loop: prefix-cached prefill, KV-cached decode, streaming, cancellation.

Why a prefix cache: every turn's prompt starts with the same persona system
prompt and then the conversation so far. Keeping the KV of the longest shared
token prefix means a new turn only pays for the child's new words, which is
what keeps time-to-first-token low on a 2-core CPU.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.llm.sampling import SamplingParams, sample
from companion.llm.session import KVCache, OnnxCausalLM, RuntimeOptions, cache_length, truncate_cache
from companion.llm.tokenizer import ChatMessage, ChatTokenizer, StreamDecoder


#: Tokens a prefill computes between looks at whether a generation is waiting: 8 tokens of the 1.5B
#: took ~120 ms on 2 cores in a one-off timing of ``OnnxCausalLM.forward`` (15 ms a token, against
#: 12 ms in 64-token chunks), so a generation waits at most about that long.
WARM_CHUNK = 8


@dataclass(frozen=True)
class TokenEvent:
    """One generated token and the text it added (may be empty mid-character)."""

    token_id: int
    text: str
    index: int
    #: Seconds since generation started (the first token's is the time to first token).
    elapsed_s: float
    #: Prompt tokens whose KV came from the prefix cache (the same on every token of a reply).
    cached_tokens: int = 0


class Gate:
    """Hands the CPU to another stage for a moment: while closed, generation pauses between tokens.

    The voice loop closes it while the first clause is synthesised, so on a 2-core board the TTS
    is not slowed by the model writing ahead (the model is far ahead of speech anyway).
    """

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def wait(self, cancel: threading.Event | None = None) -> None:
        while not self._open.wait(0.05):
            if cancel is not None and cancel.is_set():
                return


@dataclass(frozen=True)
class GenerationResult:
    text: str
    token_ids: tuple[int, ...]
    #: "stop" (end-of-turn token), "length" (max_new_tokens), "cancelled".
    stop_reason: str
    prompt_tokens: int
    #: Prompt tokens whose KV came from the prefix cache instead of being computed.
    cached_tokens: int
    first_token_s: float | None
    total_s: float
    #: Prompt-lookup draft tokens checked, and how many of them the sampler kept (``draft_tokens``).
    drafted: int = 0
    accepted_drafts: int = 0

    @property
    def decode_tokens_per_s(self) -> float | None:
        n = len(self.token_ids)
        if self.first_token_s is None or n < 2 or self.total_s <= self.first_token_s:
            return None
        return (n - 1) / (self.total_s - self.first_token_s)


class PrefixCache:
    """Bounded store of KV caches keyed by the token sequence they encode.

    Besides the recently used entries, one entry per conversation can be pinned (``put(..., pin=child)``:
    the next prompt's fixed part, prefilled while the reply plays): siblings taking turns each find
    their own prefix (persona, facts, history) instead of paying ~250 tokens of prefill (~3 s on two
    cores) every time the speaker changes, which the recently used entries alone do not keep (each
    turn adds two or three)."""

    def __init__(self, max_entries: int = 4, max_pinned: int = 3) -> None:
        self._entries: OrderedDict[tuple[int, ...], KVCache] = OrderedDict()
        self._pinned: OrderedDict[str, tuple[tuple[int, ...], KVCache]] = OrderedDict()
        self._max = max_entries
        self._max_pinned = max_pinned
        self._lock = threading.Lock()

    def put(self, tokens: Sequence[int], cache: KVCache, *, pin: str | None = None) -> None:
        key = tuple(tokens)
        if not key:
            return
        with self._lock:
            if pin is not None:  # replaces that conversation's previous prefix; the least recent pin goes
                self._pinned.pop(pin, None)
                self._pinned[pin] = (key, cache)
                while len(self._pinned) > self._max_pinned:
                    self._pinned.popitem(last=False)
                return
            self._entries[key] = cache
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def longest_prefix(self, tokens: Sequence[int]) -> tuple[int, KVCache | None]:
        """(n, cache) for the stored entry sharing the longest prefix with ``tokens``, truncated to n.

        n is at most len(tokens) - 1, so at least one token is always left to feed.
        """
        best_n, best = 0, None
        limit = len(tokens) - 1
        with self._lock:
            for key, cache in (*self._entries.items(), *self._pinned.values()):
                n = _common_prefix(key, tokens, limit)
                if n > best_n:
                    best_n, best = n, (key, cache)
            if best is None:
                return 0, None
            if best[0] in self._entries:
                self._entries.move_to_end(best[0])
        return best_n, truncate_cache(best[1], best_n)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._pinned.clear()

    def __len__(self) -> int:
        return len(self._entries) + len(self._pinned)


def lookup_draft(context: Sequence[int], k: int, shortest: int = 2, longest: int = 4) -> list[int]:
    """Up to ``k`` tokens that followed the latest earlier occurrence of the context's last n tokens
    (the longest n from ``longest`` down to ``shortest`` that occurs): prompt-lookup drafting.

    A single token recurs too often to be a useful guess, hence ``shortest`` = 2."""
    if k <= 0:
        return []
    ctx = np.asarray(context, dtype=np.int64)
    for n in range(longest, shortest - 1, -1):
        if len(ctx) <= n:
            continue
        # Windows that start early enough for a token to follow them (the tail itself is not one).
        windows = np.lib.stride_tricks.sliding_window_view(ctx[:-1], n)
        hits = np.flatnonzero((windows == ctx[-n:]).all(axis=1))
        if hits.size:
            start = int(hits[-1]) + n
            return ctx[start:start + k].tolist()
    return []


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


class Generator:
    """A chat model ready to answer: tokenizer + ONNX session + prefix cache + one worker thread."""

    def __init__(self, model_dir: Path, options: RuntimeOptions = RuntimeOptions(), *, cache_entries: int = 4) -> None:
        self.model_dir = model_dir
        self.tokenizer = ChatTokenizer(model_dir)
        self.model = OnnxCausalLM(model_dir / "model.onnx", options)
        self.prefix_cache = PrefixCache(cache_entries)
        # One worker per model: generation never blocks the event loop and never runs twice at once.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm")
        #: Generations asked for so far: a prefill queued before one gives way to it (``prefill_ids``).
        self._asked = 0
        #: (prompt, its last position's logits, its KV) left by ``ends_here`` for the reply that follows:
        #: its first token is sampled with no forward pass. Read and written on the worker thread only.
        self._ready: tuple[tuple[int, ...], np.ndarray, KVCache] | None = None

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def warm(self, messages: Sequence[ChatMessage]) -> int:
        """Compute and keep the KV of a fixed prefix (the persona's system prompt); returns its length."""
        ids = self.tokenizer.encode_chat(messages, add_generation_prompt=False)
        self.warm_ids(ids)
        return len(ids)

    def warm_ids(self, ids: Sequence[int], stop: Callable[[], bool] | None = None, pin: str | None = None) -> int:
        """Compute and keep the KV of ``ids``; returns how many of them are now cached.

        With ``stop``, the prefill goes in chunks of ``WARM_CHUNK`` tokens and ends early when it returns
        True, keeping what it computed (a generation that wants the model now waits one chunk at most).
        ``pin``: keep it as that conversation's prefix (``PrefixCache``)."""
        ids = list(ids)
        n, cache = self.prefix_cache.longest_prefix(ids + [0])
        if n >= len(ids):
            if pin is not None and cache is not None:
                self.prefix_cache.put(ids[:n], cache, pin=pin)
            return n
        past = cache if cache is not None else self.model.empty_cache()
        step = len(ids) if stop is None else WARM_CHUNK
        while n < len(ids) and not (stop is not None and stop()):
            _, past = self.model.forward(ids[n:n + step], past)
            n = min(len(ids), n + step)
        if n:
            self.prefix_cache.put(ids[:n], past, pin=pin if n == len(ids) else None)
        return n

    async def prefill(self, messages: Sequence[ChatMessage], *, pin: str | None = None) -> int:
        """``warm`` on the model's own worker (queued before any generation that follows)."""
        return await self.prefill_ids(self.tokenizer.encode_chat(messages, add_generation_prompt=False), pin=pin)

    async def prefill_ids(self, ids: Sequence[int], *, pin: str | None = None) -> int:
        """``warm_ids`` on the model's worker, giving way to any generation asked for after it (and
        stopping when the caller is cancelled). Returns the tokens of ``ids`` now cached."""
        asked, cancel = self._asked, threading.Event()
        work = asyncio.get_running_loop().run_in_executor(
            self.executor, self.warm_ids, ids, lambda: cancel.is_set() or self._asked != asked, pin)
        try:
            return await work
        except asyncio.CancelledError:
            cancel.set()
            raise

    def ends_here(self, ids: Sequence[int], prompt: Sequence[int] = ()) -> float:
        """The model's probability that the text ``ids`` end with ends there: that the next token is the
        end of the message or a full stop, ! or ? (the tokenizer's ``sentence_end_ids``).

        A language model reads "my favourite food is" and "and so my fellow Americans" as going on, and
        "why is the sky blue" as a question asked. ``ids`` is the open prompt of a turn
        (``ChatTokenizer.encode_open``): its KV goes into the prefix cache. With ``prompt``, the reply's
        prompt that ``ids`` begin, the same forward pass feeds the rest of it too (the end of the message,
        the reply's header) and keeps the logits of its last position: the reply that follows samples its
        first token at once: one pass fewer (`companion bench llm --json`, ``words_vote_to_first_token_ms``:
        1.5B on 2 cores, 207 ms against 275 in two passes). Blocking; see ``aends_here``."""
        ids = list(ids)
        if not ids:
            raise ValueError("empty prompt")
        prompt = list(prompt)
        tail = prompt[len(ids):] if len(prompt) > len(ids) and prompt[:len(ids)] == ids else []
        n, past = self.prefix_cache.longest_prefix(ids)  # leaves one token at least: its logits are needed
        past = past if past is not None else self.model.empty_cache()
        # One pass for the words and the rest of the prompt; only the rows at the words' end and after it.
        logits, past = self.model.forward(ids[n:] + tail, past, last=len(tail) + 1)
        self.prefix_cache.put(ids + tail, past)
        self._ready = (tuple(prompt), np.asarray(logits[-1]), past) if tail else None
        z = np.asarray(logits[0], dtype=np.float64).reshape(-1)
        p = np.exp(z - z.max())
        return float(p[list(self.tokenizer.sentence_end_ids)].sum() / p.sum())

    def aends_here(self, ids: Sequence[int], prompt: Sequence[int] = ()) -> asyncio.Future[float]:
        """``ends_here`` on the model's own worker, queued now: before any generation asked for after this call."""
        return asyncio.get_running_loop().run_in_executor(self.executor, self.ends_here, ids, prompt)

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams = SamplingParams(),
        *,
        cancel: threading.Event | None = None,
        on_token: Callable[[TokenEvent], None] | None = None,
        gate: Gate | None = None,
        avoid: Sequence[Sequence[int]] = (),
    ) -> GenerationResult:
        """Blocking generation; ``cancel`` is checked before every forward pass (stops within one token).
        While ``gate`` is closed the model waits before its next forward pass (another stage has the CPU)."""
        started = time.perf_counter()
        prompt = list(prompt_ids)
        if not prompt:
            raise ValueError("empty prompt")
        ready, self._ready = self._ready, None
        first_logits = None
        if ready is not None and ready[0] == tuple(prompt):  # ``ends_here`` fed the whole prompt
            cached, first_logits, past = len(prompt), ready[1], ready[2]
        else:
            cached, past = self.prefix_cache.longest_prefix(prompt)
        if past is None:
            past = self.model.empty_cache()
        rng = np.random.default_rng(params.seed)
        decoder = StreamDecoder(self.tokenizer)
        generated: list[int] = []
        fed = prompt[:cached]
        pending = prompt[cached:]
        first_token_s = None
        stop_reason = "length"
        drafted = accepted_drafts = 0
        asked = False  # the reply holds a question mark (``params.ask_within``)
        while len(generated) < params.max_new_tokens and stop_reason == "length":
            if gate is not None:
                gate.wait(cancel)
            if cancel is not None and cancel.is_set():
                stop_reason = "cancelled"
                break
            # Not while the prompt is fed: its KV is kept whole for the next turn (below).
            room = min(params.draft_tokens, params.max_new_tokens - len(generated) - 1)
            draft = lookup_draft(fed + pending, room) if generated and room > 0 else []
            if first_logits is not None:  # the prompt's last logits came with it (``ends_here``)
                logits, first_logits = first_logits[None, :], None
            elif draft:
                logits, past = self.model.forward(pending + draft, past, last=len(pending) + len(draft))
            else:
                logits, past = self.model.forward(pending, past)
                logits = logits[None, :]
            if not generated:  # the prompt's KV: worth keeping for the next turn of this conversation
                self.prefix_cache.put(fed + pending, past)
            # Row i holds the logits after pending + draft[:i]: sample each in order, as token-by-token
            # decoding would, and go on while the sample is the drafted token.
            kept = 0
            for row in logits:
                hold = not asked and len(generated) < params.ask_within
                token = sample(row, params, generated, rng, avoid, self.tokenizer.stop_token_ids if hold else ())
                if token in self.tokenizer.stop_token_ids:
                    stop_reason = "stop"
                    break
                generated.append(token)
                now = time.perf_counter() - started
                if first_token_s is None:
                    first_token_s = now
                event = TokenEvent(token, decoder.push(token), len(generated) - 1, now, cached)
                asked = asked or "?" in event.text
                if on_token is not None:
                    on_token(event)
                if kept < len(draft) and token == draft[kept]:
                    kept += 1
                    continue
                break
            drafted += len(draft)
            accepted_drafts += kept
            fed += pending + draft[:kept]
            if kept < len(draft):  # the KV of the rejected draft tokens is dropped
                past = truncate_cache(past, len(fed))
            pending = [generated[-1]] if generated else []
        if generated and cache_length(past) == len(fed):
            self.prefix_cache.put(list(fed), past)
        return GenerationResult(
            text=self.tokenizer.decode(generated),
            token_ids=tuple(generated),
            stop_reason=stop_reason,
            prompt_tokens=len(prompt),
            cached_tokens=cached,
            first_token_s=first_token_s,
            total_s=time.perf_counter() - started,
            drafted=drafted,
            accepted_drafts=accepted_drafts,
        )

    async def stream(
        self, prompt_ids: Sequence[int], params: SamplingParams = SamplingParams(), gate: Gate | None = None,
        avoid: Sequence[Sequence[int]] = (),
    ) -> AsyncIterator[TokenEvent | GenerationResult]:
        """Tokens as they are made, then the GenerationResult. Cancelling the consumer stops the model
        within one token.

        The queue holds at most max_new_tokens + 2 items (every token, the result, an error), so the
        worker thread never blocks on it.
        """
        loop = asyncio.get_running_loop()
        self._asked += 1  # a prefill running on the worker stops at its next chunk
        queue: asyncio.Queue = asyncio.Queue(maxsize=params.max_new_tokens + 2)
        cancel = threading.Event()

        def put(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                put(self.generate(prompt_ids, params, cancel=cancel, on_token=put, gate=gate, avoid=avoid))
            except BaseException as err:  # noqa: BLE001 - handed to the awaiting side
                put(err)

        loop.run_in_executor(self.executor, work)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, GenerationResult):
                    break
        finally:
            # The worker sees the flag before its next forward pass and returns; the next
            # generation queues behind it on the same one-worker executor.
            cancel.set()
