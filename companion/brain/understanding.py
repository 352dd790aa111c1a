"""The models that read what a sentence means: the fact cards' index over the sentence encoder
(knowledge/), and the safety classifier, the same encoder fine-tuned for safety (safety/classifier.py)."""

from __future__ import annotations

from dataclasses import dataclass

from companion.config import CompanionConfig
from companion.knowledge.index import Knowledge, load_knowledge
from companion.safety.classifier import SafetyClassifier, load_classifier


@dataclass(frozen=True)
class Understanding:
    #: None: grounding is off in the config, or the encoder is not prepared.
    knowledge: Knowledge | None = None
    #: None: the classifier is off in the config, or it could not be trained (logged).
    safety: SafetyClassifier | None = None


def load_understanding(config: CompanionConfig, cache) -> Understanding:
    """Both, each cached beside the models (the classifier is trained at its first use after a change)."""
    knowledge = load_knowledge(config.knowledge, cache)
    safety = load_classifier(cache, config.knowledge.encoder) if config.safety.classifier else None
    return Understanding(knowledge, safety)
