"""``companion eval quality FILE``: how good the replies are, through the same path as ``companion chat``.

A line of the file is one JSON object with a ``kind``:

- ``fact``: a question with a checkable answer; ``any`` (the reply contains at least one, case-insensitive
  substring) and ``none`` (it contains none of these: the classic wrong answer).
- ``social``: news, feelings, play; ``any``/``none`` as above (``none`` catches an echo of the child).
- ``child_fact``: a question about the child that the robot was never told ("how old am i"); the reply
  must not claim a value. ``any``/``none`` may be given too.
- ``conversation``: ``turns``, the child's lines said to one child in one session.

Extra keys (``topic``, ``note``) are carried along, not checked. Every single line is asked of a fresh
child with an empty memory; a conversation is one session of one fresh child.

The checks here are pure functions of the text, so they are unit-tested without a model; ``run_items``
is the only part that talks to one. The metrics are a floor, not the bar: read the replies too.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from companion.brain.claims import PETS
from companion.brain.conversation import Conversation
from companion.brain.echo import STOPWORDS, WORD, echoes, plain, sentences
from companion.config import CompanionConfig
from companion.errors import CompanionError
from companion.knowledge.index import Knowledge
from companion.llm.generate import Generator
from companion.memory.store import MemoryStore
from companion.memory.worker import MemoryWorker
from companion.persona import Persona

EVAL_FILE_INVALID = "EVAL_FILE_INVALID"
KINDS = ("fact", "social", "child_fact", "conversation")
#: Turns of one scripted conversation at most (a bound, so a bad file cannot run for hours).
MAX_TURNS = 30
#: A reply sentence counts for repeats from this many words (shorter ones, "Wow!", repeat naturally).
REPEAT_MIN_WORDS = 4

_NUMBER = r"(?:\d{1,3}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"


@dataclass(frozen=True)
class QualityItem:
    """One line of a quality file, checked."""

    id: str
    kind: str
    #: What the child says (fact, social, child_fact); "" for a conversation.
    text: str = ""
    #: The child's lines of one session (conversation only).
    turns: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    #: The file's other keys (``topic``...), carried into the report.
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LineResult:
    """A line's replies and every check on them; ``failed`` names what went wrong."""

    item: QualityItem
    replies: tuple[str, ...]
    #: How each reply came about: "model", or the fixed line that answered ("safety", "memory", ...).
    sources: tuple[str, ...]
    #: "any" / "none:<word>" keyword failures (fact, social, child_fact).
    keyword_failures: tuple[str, ...]
    #: The first sentence repeats the child's words; None when the line is too short to tell (or a conversation).
    echo: bool | None
    #: Per reply: what gave the persona away, or None.
    leaks: tuple[str | None, ...]
    #: A child_fact reply's invented claim ("your favourite food is pizza"), or None.
    claim: str | None
    #: Indices of conversation replies with a sentence that an earlier reply already said.
    repeats: tuple[int, ...]

    @property
    def failed(self) -> tuple[str, ...]:
        out = list(self.keyword_failures)
        if self.echo:
            out.append("echo")
        out += [f"persona_leak@{i}: {leak}" for i, leak in enumerate(self.leaks) if leak]
        if self.claim:
            out.append(f"invented: {self.claim}")
        out += [f"repeat@{i}" for i in self.repeats]
        return tuple(out)

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_json(self) -> dict:
        item = self.item
        said = {"turns": list(item.turns), "replies": list(self.replies)} if item.kind == "conversation" else \
            {"text": item.text, "reply": self.replies[0]}
        return {"id": item.id, "kind": item.kind, **item.extra, **said, "passed": self.passed,
                "failed": list(self.failed), "sources": list(self.sources)}


# ---------------------------------------------------------------- the file

def _invalid(path: Path, n: int, message: str) -> CompanionError:
    return CompanionError(f"{path}:{n}: {message}", code=EVAL_FILE_INVALID)


def _strings(spec: dict, key: str, path: Path, n: int) -> tuple[str, ...]:
    value = spec.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _invalid(path, n, f"'{key}' must be a list of non-empty strings")
    return tuple(value)


def load_items(path: Path) -> list[QualityItem]:
    """Every line of a quality file, checked; a bad line is an error naming the file and the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise CompanionError(f"{path}: no such file", code=EVAL_FILE_INVALID) from err
    except (OSError, UnicodeDecodeError) as err:
        raise CompanionError(f"{path}: cannot be read: {err}", code=EVAL_FILE_INVALID) from err
    items: list[QualityItem] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            spec = json.loads(line)
        except json.JSONDecodeError as err:
            raise _invalid(path, n, f"not JSON: {err.msg}") from err
        if not isinstance(spec, dict):
            raise _invalid(path, n, "a line must be a JSON object")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise _invalid(path, n, f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        item_id = spec.get("id", f"line{n}")
        if not isinstance(item_id, str) or not item_id or item_id in seen:
            raise _invalid(path, n, f"'id' must be a unique non-empty string, got {item_id!r}")
        seen.add(item_id)
        text, turns = spec.get("text", ""), ()
        if kind == "conversation":
            turns = _strings(spec, "turns", path, n)
            if not 2 <= len(turns) <= MAX_TURNS:
                raise _invalid(path, n, f"a conversation needs 2 to {MAX_TURNS} 'turns', got {len(turns)}")
        elif not isinstance(text, str) or not text.strip():
            raise _invalid(path, n, f"a {kind} line needs a non-empty 'text'")
        any_, none = _strings(spec, "any", path, n), _strings(spec, "none", path, n)
        if kind == "fact" and not any_:
            raise _invalid(path, n, "a fact line needs 'any': the words a right answer contains")
        extra = {k: v for k, v in spec.items() if k not in ("id", "kind", "text", "turns", "any", "none")}
        items.append(QualityItem(item_id, kind, text, turns, any_, none, extra))
    if not items:
        raise CompanionError(f"{path}: no lines to evaluate", code=EVAL_FILE_INVALID)
    return items


# ---------------------------------------------------------------- the checks (pure)

def keyword_failures(reply: str, any_: Sequence[str], none: Sequence[str]) -> tuple[str, ...]:
    low = plain(reply)
    out = [] if not any_ or any(plain(w) in low for w in any_) else ["any"]
    return tuple(out + [f"none:{w}" for w in none if plain(w) in low])


#: Words of the system prompt and of the turn's instructions (brain/prompt.py) said back to the child.
_META_PHRASES = ("young children aged", "short sentences", "easy to say out loud", "language model", "system prompt",
                 "my instructions", "i was told to", "i am programmed", "i'm programmed", "true facts for your answer",
                 "if you are not sure of the answer", "if you are not sure of an answer",
                 "say simply that you are not sure", "facts about the child", "last time:", "facts:",
                 "facts note", "note comes before")
#: Prompt-speak: the child called "the child", the AI disclaimer ("as a simple language AI, I ...").
_META_PATTERNS = (re.compile(r"\bthe child\b"), re.compile(r"\bas an? (?:[\w-]+ ){0,3}(?:ai|assistant|chatbot)\b"))
_THIRD_PERSON_VERBS = ("is", "was", "has", "had", "can", "will", "would", "could", "does", "doesn't", "isn't",
                       "wasn't", "can't", "the robot", "and her", "and his", "and she", "and he")


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def persona_leak(reply: str, persona: Persona) -> str | None:
    """What in the reply gives the persona away, or None.

    Third-person self-talk ("Pip is", "Pip's", "Pip helped", "Pip and her", "Pip, who", "As Pip", "fun for Pip",
    a "Pip:" label), a run of four words of the persona's
    description, style or favourite-topics list (as the system prompt writes it) with at least two content
    words ("kind and cheerful robot", "space and stars, dinosaurs"), or a phrase of the system prompt's
    instructions ("short sentences", "the child", "as a simple language AI").
    """
    name = re.escape(persona.name)
    verbs = "|".join(re.escape(v) for v in _THIRD_PERSON_VERBS)
    text = reply.replace("\u2019", "'")
    for pattern in (rf"\b{name}'s\b", rf"\b{name} (?:{verbs}|[a-z]{{2,}}s|[a-z]{{2,}}ed)\b",
                    rf"\b(?:[Aa]s|for|with|to|about|of) {name}\b",
                    rf"(?<!I'm )(?<!I am )(?<!is )\b{name}, (?:a|an|the|who)\b", rf"\b{name}\s*:",
                    r"\b(?:[Aa]ssistant|[Uu]ser)\s*:"):
        found = re.search(pattern, text)
        if found:
            return found.group(0)
    low = plain(reply)
    for phrase in _META_PHRASES + (f"at most {persona.max_words} words",):
        if phrase in low:
            return phrase
    for meta in _META_PATTERNS:
        found = meta.search(low)
        if found:
            return found.group(0)
    said = WORD.findall(low)
    for source in (persona.description, persona.style, ", ".join(persona.favourite_topics)):
        for gram in sorted(_ngrams(WORD.findall(plain(source)), 4) & _ngrams(said, 4)):
            if sum(w not in STOPWORDS for w in gram) >= 2:
                return " ".join(gram)
    return None


_MONTHS = "january february march april may june july august september october november december".split()
_COLOURS = ("red orange yellow green blue purple pink brown black white grey gray blonde blond ginger hazel "
            "golden dark light").split()
_PETS = f"(?:{'|'.join(PETS)})"
_PEOPLE = (r"(?:(?:little |big |baby |older |younger )?(?:best )?(?:friend|teacher|brother|sister|mum|mummy|mom|"
           r"mommy|dad|daddy|grandma|granny|grandpa|baby))")
_FAVOURITE = r"fav(?:ou?rite|e) \w+(?: \w+)?"
_HEDGE = r"(?: (?:probably|maybe|definitely|surely|really|always))?"
_NAMED = r"(?: is| was)(?: called| named)|(?:'?s)? name is"
#: Words right after "your X is" that are not a value ("I don't know what your favourite food is yet").
_NOT_VALUES = frozenset("yet not still something secret mystery unknown special what a an the that this it which "
                        "who there here".split())
_ASKING = re.compile(r"\b(?:what|which|who|whether|if|how old|when|where)\s+$", re.IGNORECASE)
_I = re.IGNORECASE
_CLAIMS = (
    re.compile(rf"\b(?:your|my) {_FAVOURITE} (?:is|are|was)(?: called| named)?{_HEDGE}(?: (?:a|an|the))? "
               r"(?P<value>[\w']+)", _I),
    re.compile(rf"\b(?:your|my) (?:{_PETS}|{_PEOPLE})(?:{_NAMED}) (?P<value>[\w']+)", _I),
    re.compile(r"\byour (?:middle |last |full |first )?name is (?P<value>[\w']+)", _I),
    re.compile(r"\bmy (?:middle|last|full|first) name is (?P<value>[\w']+)", _I),
    re.compile(rf"(?i:\b(?:your|my) {_PEOPLE} is) (?P<value>[A-Z][\w']+)"),
    re.compile(rf"\byour (?:eyes|hair) (?:is|are){_HEDGE} (?P<value>{'|'.join(_COLOURS)})\b", _I),
    re.compile(rf"\byour birthday is{_HEDGE} (?:in |on )?(?:the )?(?P<value>{'|'.join(_MONTHS)}|\d{{1,2}}"
               r"(?:st|nd|rd|th)?)\b", _I),
    re.compile(rf"\byou(?:'re| are){_HEDGE}(?: about| already| now| just)? (?P<value>{_NUMBER})"
               r"(?=\s*(?:years?\b|and a half\b|[.!,]|$))", _I),
    re.compile(rf"\byou (?:turned|will be|'ll be) (?P<value>{_NUMBER})\b", _I),
    re.compile(r"\byou have (?:a|an|one|two|three|\d+) (?:\w+ ){1,2}(?:called|named) (?P<value>[\w']+)", _I),
    re.compile(rf"\bI(?:'m| am) (?P<value>{_NUMBER}) years? old\b", _I),
    re.compile(rf"\b(?P<value>(?:{'|'.join(_MONTHS)}) \d{{1,2}}(?:st|nd|rd|th)?|\d{{1,2}}(?:st|nd|rd|th)? of "
               rf"(?:{'|'.join(_MONTHS)}))\b", _I),
    re.compile(rf"\b(?P<value>[\w']+) (?:is|are) (?:your|my) {_FAVOURITE}", _I),
    re.compile(rf"\b(?:you|I) have(?: got)? (?P<value>{_NUMBER}) (?:brothers?|sisters?|pets?|dogs?|cats?)\b", _I),
    re.compile(r"\byou live (?:in|on|at) (?P<value>[\w']+)", _I),
    re.compile(r"\byou (?:really )?(?:love|like) (?P<value>[\w' ]+?) (?:the )?(?:most|best)\b", _I),
)


def invented_claim(reply: str) -> str | None:
    """A statement of the child's own facts ("your dog is called Max", "you are 7"), or None.

    Questions back ("Is your favourite colour blue?") and "I don't know what your favourite food is yet"
    are not claims. "my favourite food is ...", "my dog's name is ...", "I am 10 years old" count: a small model
    mixes up "my" and "your" and answers as if it were the child.
    """
    for sentence in sentences(reply.replace("\u2019", "'")):
        if sentence.rstrip().endswith("?"):
            continue
        for claim in _CLAIMS:
            for found in claim.finditer(sentence):
                if found.group("value").lower() in _NOT_VALUES or _ASKING.search(sentence[:found.start()]):
                    continue
                return found.group(0)
    return None


def _normal(sentence: str) -> str:
    return " ".join(WORD.findall(plain(sentence)))


def repeated_replies(replies: Sequence[str]) -> tuple[int, ...]:
    """Indices of replies with a sentence (>= 4 words, normalised) that an earlier reply already said."""
    said: set[str] = set()
    out = []
    for i, reply in enumerate(replies):
        mine = {s for s in map(_normal, sentences(reply)) if len(s.split()) >= REPEAT_MIN_WORDS}
        if mine & said:
            out.append(i)
        said |= mine
    return tuple(out)


#: Sources of a reply that are reviewed text, not the model's words (plan kinds of brain/plan.py).
FIXED_SOURCES = frozenset({"safety", "care", "memory", "card", "quiet_hours", "daily_limit"})


def stock_openings(results: Sequence[LineResult]) -> tuple[str, ...]:
    """Ids of social lines whose model reply opens with the same sentence as the model's reply to another
    social line ("That's great!" to a fox in the garden, a gold star and a new bike): a stock opener
    says the robot did not listen. Fixed lines (a caring line, a safety line) are left out."""
    firsts: dict[str, list[str]] = {}
    for r in results:
        if r.item.kind == "social" and r.sources and r.sources[0] not in FIXED_SOURCES:
            first = next(iter(sentences(r.replies[0])), "")
            if _normal(first):
                firsts.setdefault(_normal(first), []).append(r.item.id)
    return tuple(sorted(i for ids in firsts.values() if len(ids) > 1 for i in ids))


def score(item: QualityItem, replies: Sequence[str], persona: Persona,
          sources: Sequence[str] | None = None) -> LineResult:
    """Every check of a line on its replies (one reply, or one per turn of a conversation)."""
    single = item.kind != "conversation"
    return LineResult(
        item=item, replies=tuple(replies), sources=tuple(sources or ["model"] * len(replies)),
        keyword_failures=keyword_failures(replies[0], item.any, item.none) if single else (),
        echo=echoes(item.text, replies[0]) if single else None,
        leaks=tuple(persona_leak(r, persona) for r in replies),
        claim=invented_claim(replies[0]) if item.kind == "child_fact" else None,
        repeats=() if single else repeated_replies(replies),
    )


# ---------------------------------------------------------------- running and reporting

def run_items(items: Sequence[QualityItem], generator: Generator, config: CompanionConfig, persona: Persona,
              knowledge: Knowledge | None = None, classifier=None) -> list[LineResult]:
    """Each line through ``Conversation.reply`` (as ``companion chat``), a fresh child per line."""

    async def session(worker: MemoryWorker, child: str, lines: Sequence[str]) -> list:
        conversation = Conversation(generator, config, child, worker, knowledge, classifier)
        try:
            return [await conversation.reply(line) for line in lines]
        finally:
            await conversation.close()

    results = []
    with tempfile.TemporaryDirectory(prefix="companion-eval-") as tmp:
        store = MemoryStore(Path(tmp))
        worker = MemoryWorker(store)
        try:
            for n, item in enumerate(items):
                said = asyncio.run(session(worker, f"child{n}", item.turns or (item.text,)))
                results.append(score(item, [r.reply for r in said], persona, [r.stop_reason for r in said]))
        finally:
            worker.close()
            store.close()
    return results


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 3) if n else None


def summary(results: Sequence[LineResult]) -> dict:
    """The metrics (rates in [0, 1], None where the file has no line of that kind) and every line."""
    by_kind = {k: [r for r in results if r.item.kind == k] for k in KINDS}
    singles = [r for r in results if r.item.kind != "conversation"]
    echo_checked = [r for r in singles if r.echo is not None]
    conversations = by_kind["conversation"]
    replies = [reply for r in results for reply in r.replies]
    social_model = [r for r in by_kind["social"] if r.sources and r.sources[0] not in FIXED_SOURCES]
    stock = stock_openings(results)
    return {
        "fact_acc": _rate(sum(not r.keyword_failures for r in by_kind["fact"]), len(by_kind["fact"])),
        "social_ok": _rate(sum(not r.keyword_failures for r in by_kind["social"]), len(by_kind["social"])),
        "child_fact_ok": _rate(sum(r.passed for r in by_kind["child_fact"]), len(by_kind["child_fact"])),
        "echo_rate": _rate(sum(bool(r.echo) for r in echo_checked), len(echo_checked)),
        # A fact answer that restates the question counts as an echo too; per kind, social shows the parroting.
        "echo_by_kind": {k: _rate(sum(bool(r.echo) for r in echo_checked if r.item.kind == k),
                                  sum(r.item.kind == k for r in echo_checked)) for k in KINDS[:3]},
        "persona_leak": _rate(sum(leak is not None for r in results for leak in r.leaks), len(replies)),
        "invented_child_facts": _rate(sum(r.claim is not None for r in by_kind["child_fact"]),
                                      len(by_kind["child_fact"])),
        "repeat_rate": _rate(sum(bool(r.repeats) for r in conversations), len(conversations)),
        "repeat_reply_rate": _rate(sum(len(r.repeats) for r in conversations),
                                   sum(len(r.replies) for r in conversations)),
        # Of the social lines the model answered: share opening with a sentence another line got too.
        "stock_opening_rate": _rate(len(stock), len(social_model)),
        "stock_openings": list(stock),
        "mean_words": round(sum(len(r.split()) for r in replies) / len(replies), 1) if replies else None,
        "counts": {**{k: len(v) for k, v in by_kind.items()}, "replies": len(replies),
                   "echo_checked": len(echo_checked), "persona_leaks": sum(leak is not None for r in results
                                                                            for leak in r.leaks)},
        "lines": [r.to_json() for r in results],
    }


METRICS = ("fact_acc", "social_ok", "child_fact_ok", "echo_rate", "persona_leak", "invented_child_facts",
           "repeat_rate", "repeat_reply_rate", "stock_opening_rate")


def format_table(report: dict) -> str:
    lines = [f"{'id':10} {'kind':12} {'result':6} failed"]
    for line in report["lines"]:
        lines.append(f"{line['id']:10} {line['kind']:12} {'PASS' if line['passed'] else 'FAIL':6} "
                     + "; ".join(line["failed"]))
        pairs = zip(line["turns"], line["replies"]) if "turns" in line else [(line["text"], line["reply"])]
        for child, reply in pairs:
            lines.append(f"{'':12}child: {child}\n{'':12}robot: {reply}")
    lines.append("")
    counts = report["counts"]
    lines.append("lines: " + ", ".join(f"{k} {counts[k]}" for k in KINDS) + f"; replies {counts['replies']}")
    lines.append("  ".join(f"{m} {report[m]}" for m in METRICS) + f"  mean_words {report['mean_words']}")
    lines.append("echo by kind: " + ", ".join(f"{k} {v}" for k, v in report["echo_by_kind"].items()))
    return "\n".join(lines)
