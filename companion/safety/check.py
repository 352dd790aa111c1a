"""The safety layer: input check on what the child said, output check on every clause the robot says."""

from __future__ import annotations

from dataclasses import dataclass

from companion.safety.lexicon import ACTIONS, OUTPUT_CATEGORIES, Lexicon
from companion.safety.replies import reply_for


@dataclass(frozen=True)
class SafetyConfig:
    #: Extra terms per category, as "category:term" (e.g. "weapons:slingshot"); no code change needed.
    extra_terms: tuple[str, ...] = ()
    #: Topics a parent does not want discussed (redirected with category parent_deny).
    deny_topics: tuple[str, ...] = ()
    #: The learned profanity/insult classifier (alt-profanity-check) as a second layer.
    profanity_model: bool = True
    #: Its probability at or above which a text is profane; high enough that "where do fish go when they
    #: die" is answered (tests/test_safety.py).
    profanity_threshold: float = 0.85


@dataclass(frozen=True)
class SafetyVerdict:
    #: "answer", "redirect" or "alert".
    action: str
    category: str | None = None
    #: Which layer decided: "lexicon", "parent_deny", "classifier" (None for answer).
    layer: str | None = None

    def to_json(self) -> dict:
        return {"action": self.action, "category": self.category}


ANSWER = SafetyVerdict("answer")


class SafetyLayer:
    def __init__(self, config: SafetyConfig = SafetyConfig()) -> None:
        extra: dict[str, list[str]] = {}
        for item in config.extra_terms:
            category, _, term = item.partition(":")
            if not term:
                from companion.errors import ConfigError

                raise ConfigError(f"safety.extra_terms entry {item!r} must be 'category:term'")
            extra.setdefault(category.strip(), []).append(term.strip())
        self.lexicon = Lexicon.build(extra, list(config.deny_topics))
        self.config = config
        self._profanity = None
        if config.profanity_model:
            from profanity_check import predict_prob

            self._profanity = predict_prob
            self._profanity(["warm up"])

    def _profane(self, text: str) -> bool:
        """The profanity model's verdict on ``text`` with its benign phrases taken out, as the lexicon
        sees it: a bag-of-words model scores "A pig says oink oink." 0.93 and "Squirrels eat nuts" 0.84."""
        if self._profanity is None:
            return False
        plain = self.lexicon.without_benign(text)
        return bool(plain.strip()) and float(self._profanity([plain])[0]) >= self.config.profanity_threshold

    def check_input(self, text: str) -> SafetyVerdict:
        hits = self.lexicon.match(text)
        if hits:
            return SafetyVerdict(ACTIONS[hits[0]], hits[0], "parent_deny" if hits[0] == "parent_deny" else "lexicon")
        if self._profane(text):
            return SafetyVerdict("redirect", "profanity", "classifier")
        return ANSWER

    def check_output(self, clause: str) -> SafetyVerdict:
        hits = self.lexicon.match(clause, OUTPUT_CATEGORIES + ("parent_deny",))
        if hits:
            return SafetyVerdict("redirect", f"output:{hits[0]}", "lexicon")
        if self._profane(clause):
            return SafetyVerdict("redirect", "output:profanity", "classifier")
        return ANSWER

    @staticmethod
    def reply(verdict: SafetyVerdict, heard: str) -> str:
        category = verdict.category or "output"
        return reply_for(verdict.action, category.split(":")[0] if not category.startswith("output") else "output",
                         heard)
