"""``companion eval conversations FILE``: scripted conversations with checks, through the chat path.

Each conversation gets a fresh data dir. ``turns`` is one session; ``sessions`` are
separate runs (a new Conversation reading memory back from the database);
``children`` are different children; ``then: "erase child X"`` runs the same erase
as ``companion memory erase``, and ``after`` turns follow in a new session.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from companion.brain.conversation import Conversation, persona_of
from companion.config import CompanionConfig
from companion.errors import CompanionError
from companion.llm.generate import Generator
from companion.memory.store import MemoryStore


@dataclass(frozen=True)
class CheckResult:
    conversation: str
    where: str
    check: str
    passed: bool
    reply: str


def _run_session(generator, config, store, child: str, lines: list[str]) -> list[str]:
    async def session() -> list[str]:
        conversation = Conversation(generator, config, child, store)
        try:
            return [(await conversation.reply(line)).reply for line in lines]
        finally:
            await conversation.close()

    return asyncio.run(session())


def run_conversation(spec: dict, generator: Generator, config: CompanionConfig) -> list[CheckResult]:
    name = persona_of(config).name
    replies: dict[tuple, str] = {}
    with tempfile.TemporaryDirectory(prefix="companion-eval-") as tmp:
        store = MemoryStore(Path(tmp))
        try:
            if "turns" in spec:
                for i, r in enumerate(_run_session(generator, config, store, spec["child"], spec["turns"])):
                    replies[("turn", i)] = r
            for s, lines in enumerate(spec.get("sessions", [])):
                for i, r in enumerate(_run_session(generator, config, store, spec["child"], lines)):
                    replies[("session", s, i)] = r
            for child, lines in spec.get("children", {}).items():
                for i, r in enumerate(_run_session(generator, config, store, child, lines)):
                    replies[("child", child, i)] = r
            then = spec.get("then")
            if then:
                parts = then.split()
                if parts[:2] != ["erase", "child"] or len(parts) != 3:
                    raise CompanionError(f"{spec.get('id')}: unknown step {then!r}", code="EVAL_SPEC_INVALID")
                store.erase_child(parts[2])
            if "after" in spec:
                child = spec.get("child") or next(iter(spec.get("children", {})), "child")
                for i, r in enumerate(_run_session(generator, config, store, child, spec["after"])):
                    replies[("after", i)] = r
        finally:
            store.close()

    results = []
    for check in spec.get("checks", []):
        if "after" in check:
            key = ("after", check["after"])
        elif "session" in check:
            key = ("session", check["session"], check.get("turn", 0))
        elif "child" in check:
            key = ("child", check["child"], check.get("turn", 0))
        else:
            key = ("turn", check.get("turn", 0))
        reply = replies.get(key)
        where = "/".join(str(k) for k in key)
        if reply is None:
            results.append(CheckResult(spec.get("id", "?"), where, "reply exists", False, ""))
            continue
        low = reply.lower()
        if "reply_contains_any" in check:
            wanted = [w.replace("$PERSONA_NAME", name) for w in check["reply_contains_any"]]
            results.append(CheckResult(spec["id"], where, f"contains any of {wanted}",
                                       any(w.lower() in low for w in wanted), reply))
        if "reply_not_contains" in check:
            banned = [w.replace("$PERSONA_NAME", name) for w in check["reply_not_contains"]]
            results.append(CheckResult(spec["id"], where, f"contains none of {banned}",
                                       not any(w.lower() in low for w in banned), reply))
        if "max_words" in check:
            results.append(CheckResult(spec["id"], where, f"at most {check['max_words']} words",
                                       len(reply.split()) <= check["max_words"], reply))
    return results


def run_file(path: Path, generator: Generator, config: CompanionConfig) -> list[CheckResult]:
    results = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            spec = json.loads(line)
        except json.JSONDecodeError as err:
            raise CompanionError(f"{path}:{n}: not JSON: {err}", code="EVAL_SPEC_INVALID") from err
        results += run_conversation(spec, generator, config)
    return results


def format_table(results: list[CheckResult]) -> str:
    lines = [f"{'conversation':22} {'where':14} {'result':6} check / reply"]
    for r in results:
        lines.append(f"{r.conversation:22} {r.where:14} {'PASS' if r.passed else 'FAIL':6} {r.check}")
        lines.append(f"{'':44}{r.reply[:100]!r}")
    passed = sum(r.passed for r in results)
    lines.append(f"\n{passed}/{len(results)} checks passed")
    return "\n".join(lines)
