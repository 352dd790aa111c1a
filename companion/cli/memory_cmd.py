"""``companion memory show|export|erase`` and ``companion eval conversations``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from companion.brain.conversation import check_child_name
from companion.errors import CompanionError
from companion.memory.facts import describe
from companion.memory.store import MemoryStore
from companion.paths import default_data_dir


def add_parser(sub) -> None:
    p = sub.add_parser("memory", help="what the robot remembers about each child: show, export, erase")
    msub = p.add_subparsers(dest="memory_command", required=True)
    for name, helptext in (("show", "facts, recent turns and alerts"), ("export", "everything, as JSON"),
                           ("erase", "erase a child's memory (or --all); nothing of it remains on disk")):
        q = msub.add_parser(name, help=helptext)
        q.add_argument("--child", default=None)
        q.add_argument("--data-dir", type=Path, default=None)
        if name == "erase":
            q.add_argument("--all", action="store_true", help="every child")
        if name == "show":
            q.add_argument("--alerts", action="store_true", help="only the parent alerts")
        if name == "export":
            q.add_argument("--out", type=Path, default=None)
        q.set_defaults(func=cmd_memory)

    d = sub.add_parser("doctor", help="check models, audio, config, disk, execution providers")
    d.add_argument("--data-dir", type=Path, default=None)
    d.set_defaults(func=cmd_doctor)

    e = sub.add_parser("eval", help="evaluation sets")
    esub = e.add_subparsers(dest="eval_command", required=True)
    c = esub.add_parser("conversations", help="scripted conversations with checks (real model, fresh memory)")
    c.add_argument("file", type=Path)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_eval_conversations)
    sf = esub.add_parser("safety", help="child-safety set: redirects, alerts, over-refusals (real model)")
    sf.add_argument("file", type=Path)
    sf.add_argument("--json", action="store_true")
    sf.set_defaults(func=cmd_eval_safety)


def cmd_memory(args: argparse.Namespace) -> int:
    store = MemoryStore(args.data_dir or default_data_dir())
    try:
        if args.memory_command == "erase":
            if getattr(args, "all", False):
                store.erase_all()
                print("erased the memory of every child")
                return 0
            if not args.child:
                raise CompanionError("say which child (--child NAME) or --all", code="MEMORY_CHILD_REQUIRED")
            if not store.erase_child(check_child_name(args.child)):
                raise CompanionError(f"no memory of a child named {args.child!r}", code="MEMORY_CHILD_UNKNOWN")
            print(f"erased everything about {args.child}")
            return 0
        if not args.child:
            print("children: " + (", ".join(store.children()) or "none"))
            return 0
        data = store.export_child(check_child_name(args.child))
        if args.memory_command == "export":
            text = json.dumps(data, indent=2, ensure_ascii=False)
            if args.out:
                args.out.write_text(text + "\n", encoding="utf-8")
            else:
                print(text)
            return 0
        if args.alerts:
            for a in data["alerts"]:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(a["at"]))
                print(f"  ALERT {when} [{a['category']}] {'(seen) ' if a['seen'] else ''}{a['transcript']}")
            if not data["alerts"]:
                print("  no alerts")
            return 0
        print(f"{args.child}: {len(data['turns'])} turns in {len(data['sessions'])} sessions, "
              f"{len(data['alerts'])} alerts")
        for f in data["facts"]:
            print(f"  fact: {describe(f['kind'], f['value'])}")
        for t in data["turns"][-10:]:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(t["at"]))
            print(f"  {when}  child: {t['heard']}\n{'':20}robot: {t['said']}")
        return 0
    finally:
        store.close()


def cmd_eval_conversations(args: argparse.Namespace) -> int:
    from companion.brain.conversation import load_generator
    from companion.config import load_config
    from companion.eval.conversations import format_table, run_file

    config = load_config(args.config)
    if config.llm.seed is None:  # evaluation is reproducible
        from dataclasses import replace

        config = replace(config, llm=replace(config.llm, seed=0))
    generator = load_generator(config)
    try:
        results = run_file(args.file, generator, config)
    finally:
        generator.close()
    if args.json:
        print(json.dumps({"passed": sum(r.passed for r in results), "total": len(results),
                          "checks": [r.__dict__ for r in results]}, indent=2, ensure_ascii=False))
    else:
        print(format_table(results))
    return 0 if all(r.passed for r in results) else 1


def cmd_eval_safety(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from companion.brain.conversation import load_generator
    from companion.config import load_config
    from companion.eval.safety import format_table, run_file, summary

    config = load_config(args.config)
    if config.llm.seed is None:
        config = replace(config, llm=replace(config.llm, seed=0))
    generator = load_generator(config)
    try:
        report = summary(run_file(args.file, generator, config))
    finally:
        generator.close()
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_table(report))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from companion.doctor import format_findings, run_checks

    findings = run_checks(args.config, args.data_dir or default_data_dir())
    print(format_findings(findings))
    failed = [f for f in findings if f.level == "fail"]
    print(f"\n{len(failed)} problem(s)" if failed else "\nall good")
    return 1 if failed else 0
