"""The knowledge index: sentence vectors of every card's text and questions, and lookup by meaning."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.encoder.runtime import LoadedEncoder, SentenceEncoder, load_encoder
from companion.knowledge.arithmetic import worked_fact
from companion.knowledge.cards import FactCard, digest
from companion.knowledge.contrast import narrow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retrieved:
    card: FactCard
    #: Cosine similarity of the best matching row (the card's text or one of its questions).
    score: float


@dataclass(frozen=True)
class KnowledgeConfig:
    #: Sentence encoder manifest (role encoder).
    encoder: str = "all-minilm-l6-v2"
    #: Cards put into the prompt at most.
    max_cards: int = 2
    #: Cosine similarity below which a card is not relevant to a question.
    min_similarity: float = 0.55
    #: ... and to what the child tells (not a question): "my grandma is coming to stay" matched
    #: "Grandparents are the mums and dads of your mum or dad" at 0.57, which helps no reply; "I'm scared
    #: of the dark" matches its card at 0.99. (Dev set: feelings cards that fit score >= 0.76.)
    statement_similarity: float = 0.75
    #: A second card only when it scores within this of the first (retrieval is unsure between them).
    #: Every card is ~30 prompt tokens prefilled on the turn's critical path (~12 ms each on 2 cores).
    second_card_within: float = 0.05
    #: A question that found no card is looked up once more with its words in the cards' spelling
    #: (``knowledge/respell.py``: "what does a catapiller turn into"), and then needs this similarity: a
    #: respelt word can be the wrong one ("bloo" -> "blood").
    respelled_similarity: float = 0.7
    #: A question whose best card scores at least this is answered with the card's own words (reviewed
    #: text, said as written), not the model's: with the card in its prompt the 1.5B model still said
    #: "Yes, Pluto is still a planet" and "A caterpillar turns into a big, fat dog". Below it the card
    #: only grounds the model's reply ("what planet is furthest from the sun" found the Mercury card at
    #: 0.86). Above 1.0: never (``--config`` with ``[knowledge] answer_similarity = 1.01`` compares).
    #: Dev set, ``companion eval quality companion/data/eval/quality_dev.jsonl --json`` (2026-11-29, seed 0):
    #: fact 0.922 before card answers (198af47), 0.939 with them, 0.948 once the cards were reworded to be
    #: said whole (8409572).
    answer_similarity: float = 0.9
    #: A question with a sound-alike word (``knowledge/homophones.py``: "why do cats per") takes the
    #: other spelling's cards when they answer it (``answer_similarity``) and beat the heard words' best
    #: card by at least this.
    sounds_like_margin: float = 0.1
    #: 0 turns grounding off.
    enabled: bool = True


#: Cards retrieval considers before the ones that name the child's colours and numbers are preferred
#: (``knowledge/contrast.py``); ``max_cards`` of them go on.
CANDIDATES = 8

#: How ``KnowledgeIndex.build`` makes its vectors; a change rebuilds every cached index.
INDEX_VERSION = 2


class KnowledgeIndex:
    """Rows = card texts and card questions; ``card_of[row]`` is the card's position."""

    def __init__(self, cards: tuple[FactCard, ...], vectors: np.ndarray, card_of: np.ndarray) -> None:
        self.cards = cards
        self.vectors = vectors
        self.card_of = card_of

    @classmethod
    def build(cls, cards: tuple[FactCard, ...], encoder: SentenceEncoder) -> KnowledgeIndex:
        texts, owners = [], []
        for i, card in enumerate(cards):
            for text in (card.text, *card.questions):
                texts.append(text)
                owners.append(i)
        # One sentence a pass, as a query is encoded: in a padded batch the int8 encoder's vectors shift
        # with their neighbours (its activation scales are per batch), so adding a card moved other
        # cards' scores; "i feel sad today" went from 0.73 to 0.75 against a feelings card that way.
        return cls(cards, encoder.encode(texts, batch=1).astype(np.float32), np.array(owners, dtype=np.int32))

    @classmethod
    def cached(cls, cards: tuple[FactCard, ...], encoder: SentenceEncoder, encoder_id: str,
               folder: Path) -> KnowledgeIndex:
        """Loaded from ``folder`` when the cards and the encoder are the same as when it was built."""
        path = folder / f"index-v{INDEX_VERSION}-{digest(cards)}-{encoder_id[:16]}.npz"
        if path.is_file():
            try:
                data = np.load(path)
                if data["vectors"].shape[0] == data["card_of"].shape[0]:
                    return cls(cards, data["vectors"], data["card_of"])
            except (OSError, ValueError, KeyError) as err:
                log.warning("[KNOWLEDGE_INDEX_DAMAGED] rebuilding %s: %s", path, err)
        started = time.monotonic()
        index = cls.build(cards, encoder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=index.vectors, card_of=index.card_of)
        os.replace(tmp, path)  # a killed build leaves no half index behind
        for old in folder.glob("index-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
        log.info("knowledge index: %d cards, %d rows, built in %.1f s", len(cards), len(index.card_of),
                 time.monotonic() - started)
        return index

    def lookup(self, query: np.ndarray, *, k: int, min_similarity: float) -> list[Retrieved]:
        scores = self.vectors @ query
        best: dict[int, float] = {}
        for row in np.argsort(-scores)[: 8 * k]:
            score = float(scores[row])
            if score < min_similarity:
                break
            card = int(self.card_of[row])
            best.setdefault(card, score)
            if len(best) == k:
                break
        return [Retrieved(self.cards[i], s) for i, s in best.items()]


class Knowledge:
    """Encoder + index: ``find(text)`` -> the relevant cards (blocking: a few ms; call it off the loop)."""

    def __init__(self, encoder: SentenceEncoder, index: KnowledgeIndex, config: KnowledgeConfig) -> None:
        from companion.knowledge.respell import Respeller

        self.encoder = encoder
        self.index = index
        self.config = config
        self.respeller = Respeller([c.text for c in index.cards] + [q for c in index.cards for q in c.questions])

    def find(self, text: str, *, question: bool = True) -> tuple[Retrieved, ...]:
        """The cards for ``text``; a statement (``question`` False) needs a closer match."""
        if not text.strip() or not self.config.enabled:
            return ()
        worked = worked_fact(text)
        if worked is not None:  # exact, and no card about another sum (or word) beside it
            return (Retrieved(FactCard("arithmetic", "words", worked, ()), 1.0),)
        query = self.encoder.encode_one(text)
        floor = self.config.min_similarity if question else max(self.config.min_similarity,
                                                                 self.config.statement_similarity)
        found = self._narrowed(text, self.index.lookup(query, k=CANDIDATES, min_similarity=floor))
        if not found and question:
            respelled = self.respeller.respell(text)
            if respelled != text.lower():
                found = self.index.lookup(self.encoder.encode_one(respelled), k=self.config.max_cards,
                                          min_similarity=max(floor, self.config.respelled_similarity))
        if question and (not found or found[0].score < self.config.answer_similarity):
            found = self._sounds_like(text, found, floor)
        return tuple(r for r in found if r.score >= found[0].score - self.config.second_card_within) if found else ()

    def _narrowed(self, text: str, found: list[Retrieved]) -> list[Retrieved]:
        """The best ``max_cards`` of ``found``, keeping those that name the colours and numbers ``text``
        names when some do (``knowledge/contrast.py``)."""
        return narrow(text, found, lambda r: " ".join((r.card.text, *r.card.questions)))[: self.config.max_cards]

    def _sounds_like(self, text: str, found: list[Retrieved], floor: float) -> list[Retrieved]:
        """``found``, or the cards of the question with a sound-alike word respelt when they answer it
        outright and clearly better."""
        from companion.knowledge.homophones import variants

        best = found[0].score if found else 0.0
        for variant in variants(text):
            other = self.index.lookup(self.encoder.encode_one(variant), k=self.config.max_cards, min_similarity=floor)
            if other and other[0].score >= max(self.config.answer_similarity, best + self.config.sounds_like_margin):
                found, best = other, other[0].score
        return found


def load_knowledge(config: KnowledgeConfig, cache, encoder: LoadedEncoder | None = None) -> Knowledge | None:
    """The encoder from the model cache (or the one already loaded) and the index of the curated cards
    (built once, then cached)."""
    if not config.enabled:
        return None
    from companion.knowledge.cards import load_cards

    encoder = encoder or load_encoder(config.encoder, cache)
    if encoder is None:
        # The robot still talks, without grounding; `companion doctor` names what is missing.
        log.warning("[KNOWLEDGE_UNAVAILABLE] answering without the fact cards")
        return None
    index = KnowledgeIndex.cached(load_cards(), encoder.encoder, encoder.id, cache.root / "_knowledge")
    return Knowledge(encoder.encoder, index, config)
