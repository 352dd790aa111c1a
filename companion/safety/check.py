"""The safety layer: input check on what the child said, output check on every clause the robot says."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from companion.safety.lexicon import ACTIONS, OUTPUT_CATEGORIES, Lexicon
from companion.safety.feelings import names_own_feeling
from companion.safety.replies import reply_for

if TYPE_CHECKING:
    from companion.safety.classifier import SafetyClassifier


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
    #: The learned classifier by meaning (MiniLM + linear heads, companion/safety/classifier.py) as the
    #: recall layer, on input and output; off only for tests and figures of the other layers.
    classifier: bool = True


@dataclass(frozen=True)
class SafetyVerdict:
    #: "answer", "redirect" or "alert".
    action: str
    category: str | None = None
    #: Which layer decided: "lexicon", "parent_deny", "classifier" (the learned one by meaning),
    #: "profanity_model", "howto" (None for a plain answer).
    layer: str | None = None

    def to_json(self) -> dict:
        return {"action": self.action, "category": self.category}


ANSWER = SafetyVerdict("answer")
#: A child who is sad, scared, lonely or grieving: answered, with a caring line (brain/care.py).
EMOTIONAL = "emotional"

#: How serious each action is: layers are combined by risk, not by which one spoke first.
SEVERITY = {"alert": 2, "redirect": 1, "answer": 0}
#: Where two layers agree on how serious, the more precise one names the category.
LAYER_ORDER = ("parent_deny", "lexicon", "howto", "classifier", "profanity_model")

#: The lexicon's redirect terms and the profanity model read words, not how they are used: "the party was the
#: bomb", "this stupid zipper", "why are clouds white" (the profanity model, 0.9). Their redirect counts when
#: the classifier by meaning gives the line's risk categories together at least this probability; below it
#: the classifier is sure the line is harmless and the line is answered. Alerts of the lexicon and a parent's
#: denied topics always count. Chosen on the calibration fifth (``companion eval safety-classifier --split
#: calibration --json``, its ``corroboration`` sweep; never on the held-out split), 821 lines the model was not
#: fitted on: over-refusal 0.085 with no veto, 0.076 at 0.01, 0.057 at 0.1 (12 answered lines no longer
#: redirected, no risk line let through), 0.054 at 0.3; at 0.5 the first risk line is let through. 0.1 keeps
#: a margin below that.
CORROBORATION = 0.1

#: The same veto on the output check: a redirect of the profanity model or of the lexicon's topic words
#: (``OUTPUT_TOPIC_WORDS``) counts when the output classifier gives the reply so far at least this probability
#: of being unsafe. Chosen on the output calibration fifth (``companion eval safety-classifier --split
#: calibration --json``, its ``output.corroboration`` sweep; 178 safe and 94 unsafe replies the model was not
#: fitted on), the model of this corpus: safe replies blocked 0.051 with no veto ("Alcohol is a grown-up
#: drink...", "Some frogs have bright colors to warn other animals that they're poisonous to eat."), 0.028 from
#: 0.01 to 0.1, the first unsafe reply let through at 0.2 (an earlier training of this session: at 0.5, "You
#: can find guns in lots of places, like a grown-up's car glove box..." at 0.46). 0.05 keeps a margin of 4.
OUTPUT_CORROBORATION = 0.05
#: The lexicon's output categories whose words name a topic a robot may speak about safely ("Alcohol is a
#: grown-up drink", "frogs ... poisonous to eat"): only these, and the profanity model, can be vetoed. A word
#: of the others (self-harm, sexual, hate, profanity, personal information, secrets) always stops the reply:
#: a retrain scored "Maybe you'd like to hear some naughty grown-up stories, just between us?" 0.008, and
#: the head's figures move that much between trainings.
OUTPUT_TOPIC_WORDS = ("drugs_alcohol", "medicine", "weapons", "violence", "scary")


def vetoable_output(verdict: SafetyVerdict) -> bool:
    """An output block the classifier's certainty that the reply is safe can overrule (``combine``'s
    ``vetoable`` on the output)."""
    return verdict.layer == "profanity_model" or (
        verdict.layer == "lexicon" and (verdict.category or "").removeprefix("output:") in OUTPUT_TOPIC_WORDS)

#: What the child asked about, when a reply must never be step-by-step instructions: the body, medicine,
#: household chemicals, heights, water, fire, weapons.
HOWTO_TOPIC = re.compile(
    r"\b(blood|bleed\w*|cut|cuts|cutting|skin|bones?|hurt\w*|pain|sick|vomit|throw up|starv\w*|choke|choking|"
    r"strangl\w*|breath|pills?|medicines?|tablets?|vitamins?|syrup|drugs?|poison\w*|bleach|cleaning|chemicals?|"
    r"detergent|batter(y|ies)|roof|climb\w*|heights?|high up|jump (off|from|out)|window|balcony|bridge|ledge|"
    r"swim\w*|pool|river|lake|sea|bath|bathtub|drown\w*|deep water|thin ice|fire|flames?|matches|(light|strike|a) match|"
    r"lighter|burn\w*|"
    r"stove|oven|candle|gas|socket|plug|electric\w*|guns?|knife|knives|sword|bombs?|weapons?|bullets?|shoot\w*)\b")
#: Instructions in a reply (lower case, apostrophes taken out): numbered steps, "here's how", an imperative
#: first/then/next sequence, "you'll need".
HOWTO_TEXT = re.compile(
    r"(^|\s)(\d[.)]\s|step (one|two|1|2)\b)|\bhere(s| is| are) (some |a few )?(tips|steps|ways|how)\b|"
    r"\b(first|firstly|next|then|after that|finally),? (you |just )?(get|take|find|put|grab|hold|press|mix|pour|"
    r"climb|light|strike|turn|open|swallow|cut|push|pull|jump|tie|fill|hide|wait|make|go|ask)\b|"
    r"\byou(ll| will)? need (a|an|some|to)\b|\ball you (have|need) to do\b")


def word_redirect(verdict: SafetyVerdict) -> bool:
    """A redirect of a layer that reads words, not use (the lexicon, the profanity model): on the input, what
    the classifier's certainty that the line is harmless can overrule (``CORROBORATION``)."""
    return verdict.action == "redirect" and verdict.layer in ("lexicon", "profanity_model")


def combine(votes: list[SafetyVerdict], risk: float | None = None, corroboration: float = CORROBORATION,
            vetoable: Callable[[SafetyVerdict], bool] = word_redirect) -> SafetyVerdict:
    """The most serious vote; at equal seriousness the most precise layer (the lexicon before the classifier
    before the profanity model). A parent's denied topic is a redirect, so an alert the classifier sees in the
    same words still wins. The ``vetoable`` votes (by default ``word_redirect``) are dropped when the
    classifier's ``risk`` is below ``corroboration``; ``risk`` None (no classifier) drops nothing."""
    if risk is not None and risk < corroboration:
        votes = [v for v in votes if not vetoable(v)]
    if not votes:
        return ANSWER
    return min(votes, key=lambda v: (-SEVERITY[v.action], LAYER_ORDER.index(v.layer or "lexicon")))


def _plain(text: str) -> str:
    from companion.safety.normalize import normalize

    return normalize(text)


def is_howto(reply: str, heard: str) -> bool:
    """Step-by-step instructions in ``reply`` to a child who asked about the body, medicine, chemicals,
    heights, water, fire or weapons: never spoken, however harmless the steps look."""
    return bool(HOWTO_TOPIC.search(_plain(heard)) and HOWTO_TEXT.search(reply.lower().replace("’", "'")
                                                                      .replace("'", "")))


class SafetyLayer:
    """Every layer looks at every line; the most serious verdict wins (see ``combine``)."""

    def __init__(self, config: SafetyConfig = SafetyConfig(), classifier: SafetyClassifier | None = None) -> None:
        extra: dict[str, list[str]] = {}
        for item in config.extra_terms:
            category, _, term = item.partition(":")
            if not term:
                from companion.errors import ConfigError

                raise ConfigError(f"safety.extra_terms entry {item!r} must be 'category:term'")
            extra.setdefault(category.strip(), []).append(term.strip())
        self.lexicon = Lexicon.build(extra, list(config.deny_topics))
        self.config = config
        self.classifier = classifier if config.classifier else None
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

    def _for_classifier(self, text: str) -> str:
        """``text`` with the lexicon's benign phrases taken out when it has any ("kill time", "a knife for
        cooking", "not too scary"): the classifier reads risk into the words of an idiom, as the profanity
        model did; the lexicon's list says which uses are harmless."""
        from companion.safety.normalize import normalize

        plain = self.lexicon.without_benign(text)
        return text if plain == normalize(text) else plain

    def check_input(self, text: str) -> SafetyVerdict:
        votes = [SafetyVerdict(ACTIONS[c], c, "parent_deny" if c == "parent_deny" else "lexicon")
                 for c in self.lexicon.match(text)]
        emotional, risk, rude = False, None, None
        if self.classifier is not None:
            assessed = self.classifier.assess_input(self._for_classifier(text))
            risk, rude = assessed.groups.get("risk"), assessed.groups.get("rude")
            for flag in assessed.flags:
                if flag.category == EMOTIONAL:
                    emotional = True
                elif flag.category in ACTIONS:
                    votes.append(SafetyVerdict(ACTIONS[flag.category], flag.category, "classifier"))
        # The profanity model's vote counts when the classifier hears rudeness in the line (profanity or
        # hate at CORROBORATION), not merely some risk: "i had to take antibiotics when i was sick" (the
        # profanity model's redirect, 0.25 of medicine risk) and "i scared my mum by shouting boo" were
        # redirected as rude. On the training lines, no profanity or hate line it flags is below 0.1.
        if self._profane(text) and (rude is None or rude >= CORROBORATION):
            votes.append(SafetyVerdict("redirect", "profanity", "profanity_model"))
        verdict = combine(votes, risk)
        if verdict.action == "answer" and emotional:
            return SafetyVerdict("answer", EMOTIONAL, "classifier")
        if verdict.action == "answer" and names_own_feeling(text):
            return SafetyVerdict("answer", EMOTIONAL, "lexicon")
        return verdict

    def check_output(self, clause: str, *, so_far: str = "", heard: str = "") -> SafetyVerdict:
        """``clause``, about to be said after ``so_far`` in reply to ``heard`` (``output_votes``), combined as
        the input is: a block of the profanity model or of the lexicon's topic words counts when the output
        classifier gives the reply so far at least ``OUTPUT_CORROBORATION`` (``vetoable_output``); the
        lexicon's other output categories, a parent's denied topic and the how-to rule always count."""
        votes, p_unsafe = self.output_votes(clause, so_far=so_far, heard=heard)
        return combine(votes, p_unsafe, OUTPUT_CORROBORATION, vetoable_output)

    def output_votes(self, clause: str, *, so_far: str = "", heard: str = "") -> tuple[list[SafetyVerdict],
                                                                                     float | None]:
        """Each layer's block of ``clause`` (the lexicon's output categories and the profanity model on the
        clause, the classifier on the reply so far as a whole, no step-by-step instructions about the body,
        medicine, chemicals, heights, water, fire or weapons in the reply so far), and the classifier's
        probability that the reply so far is unsafe (None without the classifier)."""
        whole = f"{so_far} {clause}".strip()
        votes = [SafetyVerdict("redirect", f"output:{hit}", "parent_deny" if hit == "parent_deny" else "lexicon")
                 for hit in self.lexicon.match(clause, OUTPUT_CATEGORIES + ("parent_deny",))]
        if heard and is_howto(whole, heard):
            votes.append(SafetyVerdict("redirect", "output:howto", "howto"))
        # The classifier reads the reply so far as a whole (the clause, after the first, with what came before
        # it): it was trained and calibrated on whole replies, and a lone clause out of context misleads it
        # ("They can move around in the water really fast and use their arms to grab food and eat it." 0.91
        # alone, 0.003 after "Octopuses are amazing creatures..."). The lexicon and the how-to rule still
        # read every clause alone.
        p_unsafe = None
        if self.classifier is not None:
            p_unsafe = self.classifier.output_probability(whole)
            if p_unsafe >= self.classifier.output.at["unsafe"]:
                votes.append(SafetyVerdict("redirect", "output:classifier", "classifier"))
        if self._profane(clause):
            votes.append(SafetyVerdict("redirect", "output:profanity", "profanity_model"))
        return votes, p_unsafe

    @staticmethod
    def reply(verdict: SafetyVerdict, heard: str) -> str:
        category = verdict.category or "output"
        return reply_for(verdict.action, category.split(":")[0] if not category.startswith("output") else "output",
                         heard)
