"""Fact cards: loading and checking the curated knowledge base."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from companion.errors import CompanionError

#: A card a 6-year-old can follow when it is read aloud.
MAX_CARD_WORDS = 40
#: The retrieval probes beside the cards (``companion.knowledge.probe``): questions, not cards.
PROBES_FILE = "probes.jsonl"


class KnowledgeError(CompanionError):
    code = "KNOWLEDGE_INVALID"


@dataclass(frozen=True)
class FactCard:
    id: str
    topic: str
    #: One or two short sentences, true, said aloud as they are.
    text: str
    #: Questions it answers, the way children ask them.
    questions: tuple[str, ...]


def cards_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "knowledge"


def load_cards(folder: Path | None = None) -> tuple[FactCard, ...]:
    """Every card in ``folder``'s *.jsonl files, checked; a bad line is an error naming file and line."""
    folder = folder or cards_dir()
    files = sorted(p for p in folder.glob("*.jsonl") if p.name != PROBES_FILE)
    if not files:
        raise KnowledgeError(f"no fact cards in {folder}")
    cards: list[FactCard] = []
    seen: set[str] = set()
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                data = json.loads(line)
                card = FactCard(str(data["id"]), str(data["topic"]), str(data["text"]).strip(),
                                tuple(str(q).strip() for q in data.get("questions", ())))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise KnowledgeError(f"{where}: not a fact card ({err})") from err
            if card.id in seen:
                raise KnowledgeError(f"{where}: duplicate card id {card.id!r}")
            if not card.text or len(card.text.split()) > MAX_CARD_WORDS:
                raise KnowledgeError(f"{where}: card text must be 1-{MAX_CARD_WORDS} words")
            seen.add(card.id)
            cards.append(card)
    return tuple(cards)


def digest(cards: tuple[FactCard, ...]) -> str:
    """Changes when any card does (the index is rebuilt then)."""
    h = hashlib.sha256()
    for card in cards:
        h.update(json.dumps([card.id, card.topic, card.text, card.questions]).encode())
    return h.hexdigest()[:16]
