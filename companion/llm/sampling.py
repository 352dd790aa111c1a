"""Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How a reply is sampled. ``temperature == 0`` means greedy (deterministic)."""

    # These defaults are the product's: ``LLMConfig`` (``[llm]`` in companion.toml) takes its own from here.
    #: Hard cap on reply length in tokens (a reply for a young child is short); also bounds every
    #: per-reply buffer.
    max_new_tokens: int = 80
    #: 0 = greedy. A little randomness keeps a companion from sounding canned.
    temperature: float = 0.6
    #: Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p.
    top_p: float = 0.9
    #: Only the k most likely tokens are considered (0: all). Keeps sampling cheap on a 150k vocabulary.
    top_k: int = 40
    #: > 1 discourages repeating tokens already generated in this reply (not the prompt's:
    #: the reply may freely reuse the child's words and the persona's).
    repetition_penalty: float = 1.1
    #: Seed for the sampler; the same seed and prompt give the same reply.
    seed: int | None = None
    #: No n-gram of this length is said twice: within the reply, or from the recent replies the caller
    #: passes as ``avoid`` (0: off).
    no_repeat_ngram: int = 5
    #: Prompt-lookup drafting: when the last tokens written also occur earlier in the prompt or the
    #: reply, the tokens that followed them there are checked in the same forward pass as the next one
    #: and kept as far as the sampler agrees (0: off). Each token is still sampled from the model's own
    #: distribution, in order, with the same random draws, so the reply is the one token-by-token
    #: decoding gives (up to float rounding between a one-token and a several-token pass); it just
    #: takes fewer passes when the reply copies a fact card, the child's words or itself.
    draft_tokens: int = 4
    #: A reply that should ask the child something back (``TurnPlan.ask_within``, set by ``plan.asks_back``:
    #: the child told news, said hello or asked to play) does not end before it holds a question mark, until
    #: this many tokens are written (0: it may end anywhere). The 1.5B model often stops after a one-line remark
    #: ("A puppy called Biscuit is adorable!"), which leaves a six-year-old nothing to say next.
    ask_within: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.draft_tokens < 0:
            raise ValueError("draft_tokens must be >= 0")
        if self.ask_within < 0:
            raise ValueError("ask_within must be >= 0")


def apply_repetition_penalty(logits: np.ndarray, previous: Iterable[int], penalty: float) -> np.ndarray:
    if penalty == 1.0:
        return logits
    ids = np.fromiter(set(previous), dtype=np.int64)
    if ids.size == 0:
        return logits
    logits = logits.copy()
    picked = logits[ids]
    logits[ids] = np.where(picked > 0, picked / penalty, picked * penalty)
    return logits


def banned_next(generated: Sequence[int], avoid: Sequence[Sequence[int]], n: int) -> set[int]:
    """Tokens that would complete an ``n``-gram already said: in this reply or in ``avoid`` (earlier replies).

    A small model repeats a stock sentence turn after turn; a repetition penalty on the current reply
    alone cannot see the last turns'."""
    if n < 2 or len(generated) < n - 1:
        return set()
    key = tuple(generated[-(n - 1):])
    banned = set()
    for seq in (*avoid, generated[:-1]):
        for i in range(len(seq) - n + 1):
            if tuple(seq[i:i + n - 1]) == key:
                banned.add(int(seq[i + n - 1]))
    return banned


def sample(logits: np.ndarray, params: SamplingParams, previous: list[int], rng: np.random.Generator,
           avoid: Sequence[Sequence[int]] = (), forbid: Iterable[int] = ()) -> int:
    """The next token id from a (vocab,) float array of logits; never one of ``forbid``."""
    logits = apply_repetition_penalty(logits, previous, params.repetition_penalty)
    banned = banned_next(previous, avoid, params.no_repeat_ngram) | set(forbid)
    if banned and len(banned) < logits.shape[0]:
        logits = logits.copy()
        logits[list(banned)] = -np.inf
    if params.temperature == 0:
        return int(np.argmax(logits))
    if params.top_k and params.top_k < logits.shape[0]:
        candidates = np.argpartition(logits, -params.top_k)[-params.top_k:]
    else:
        candidates = np.arange(logits.shape[0])
    scores = logits[candidates].astype(np.float64) / params.temperature
    order = np.argsort(-scores, kind="stable")
    candidates, scores = candidates[order], scores[order]
    probs = np.exp(scores - scores[0])
    probs /= probs.sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p) + 1)
        candidates, probs = candidates[:keep], probs[:keep] / probs[:keep].sum()
    return int(candidates[rng.choice(candidates.shape[0], p=probs)])
