"""Retrieval probes: everyday child questions run through ``Knowledge.find`` as in production.

A probe passes when one of the cards that retrieval returns (with the production thresholds)
has one of the probe's answer words in its text: a regression check of the fact cards and the
index, not an evaluation of the robot's replies.

    python -m companion.knowledge.probe [PROBES.jsonl ...]

prints the pass rate and every failure. A file in the quality-eval format (``text``, ``kind``)
works too: only its ``fact`` lines are probed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from companion.knowledge.cards import PROBES_FILE, KnowledgeError, cards_dir


@dataclass(frozen=True)
class Probe:
    q: str
    #: Lowercase answer words: a passing card's text contains one of them as a word.
    any: tuple[str, ...]
    topic: str = ""


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    #: (card id, score, text) of every card ``find`` returned, best first.
    found: tuple[tuple[str, float, str], ...]
    passed: bool

    def describe(self) -> str:
        head = f"{self.probe.q!r} wants {'/'.join(self.probe.any)}"
        if not self.found:
            return f"{head}: no card"
        return head + ": " + "; ".join(f"{cid} {score:.2f} {text[:80]!r}" for cid, score, text in self.found)


def probes_path() -> Path:
    return cards_dir() / PROBES_FILE


def load_probes(path: Path | None = None) -> list[Probe]:
    """Probes from a JSON-lines file (``q`` or ``text``, ``any``, optional ``topic``; lines of another
    ``kind`` than ``fact`` are skipped)."""
    path = path or probes_path()
    out: list[Probe] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if data.get("kind", "fact") != "fact":
                continue
            words = data["any"]
            if isinstance(words, str) or not words:
                raise TypeError("'any' must be a non-empty list")
            out.append(Probe(str(data.get("q", data.get("text", ""))).strip(), tuple(str(w) for w in words),
                             str(data.get("topic", ""))))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise KnowledgeError(f"{path.name}:{n}: not a probe ({err})") from err
        if not out[-1].q:
            raise KnowledgeError(f"{path.name}:{n}: a probe needs a question")
    return out


def _plain(text: str) -> str:
    return re.sub(r"[-\u2010-\u2014]", " ", text.lower())


def mentions(text: str, words: Iterable[str]) -> bool:
    """Whether ``text`` has one of ``words`` as a whole word (or phrase), case-insensitive; a plural
    counts ("cloud" is in "clouds", "colony" in "colonies"), hyphens count as spaces ("thirty two" is
    in "thirty-two")."""
    plain = _plain(text)
    for word in words:
        w = _plain(word).strip()
        if not w:
            continue
        forms = re.escape(w) + "(?:s|es)?"
        if w.endswith("y"):
            forms = f"(?:{forms}|{re.escape(w[:-1])}ies)"
        if re.search(rf"(?<![a-z0-9]){forms}(?![a-z0-9])", plain):
            return True
    return False


def probe(knowledge, probes: Sequence[Probe]) -> list[ProbeResult]:
    """Every probe through ``knowledge.find`` (a question, as a child's question goes in production)."""
    results = []
    for p in probes:
        found = knowledge.find(p.q)
        results.append(ProbeResult(p, tuple((r.card.id, r.score, r.card.text) for r in found),
                                   any(mentions(r.card.text, p.any) for r in found)))
    return results


def pass_rate(results: Sequence[ProbeResult]) -> float:
    return sum(r.passed for r in results) / len(results) if results else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.knowledge.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help=f"probe files (default {probes_path()})")
    parser.add_argument("--min-rate", type=float, default=0.0, help="exit 1 when the pass rate is lower")
    args = parser.parse_args(argv)

    from companion.config import load_config
    from companion.knowledge.index import load_knowledge
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir

    knowledge = load_knowledge(load_config().knowledge, ModelCache(models_cache_dir()))
    if knowledge is None:
        print("no knowledge index (is the encoder prepared? run `companion models prepare`)", file=sys.stderr)
        return 2
    worst = 1.0
    for path in args.files or [probes_path()]:
        results = probe(knowledge, load_probes(path))
        rate = pass_rate(results)
        worst = min(worst, rate)
        failed = [r for r in results if not r.passed]
        print(f"{path}: {len(results) - len(failed)}/{len(results)} pass ({rate:.1%})")
        for r in failed:
            print("  FAIL " + r.describe())
    return 1 if worst < args.min_rate else 0


if __name__ == "__main__":
    raise SystemExit(main())
