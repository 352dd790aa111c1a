"""``companion memory show|export|erase`` and ``companion doctor``."""

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
            q.add_argument("--voiceprint", action="store_true",
                           help="include the child's voiceprint (biometric data; left out unless asked)")
        q.set_defaults(func=cmd_memory)

    d = sub.add_parser("doctor", help="check models, audio, config, disk, execution providers")
    d.add_argument("--data-dir", type=Path, default=None)
    d.set_defaults(func=cmd_doctor)


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
        data = store.export_child(check_child_name(args.child), voiceprint=getattr(args, "voiceprint", False))
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


def cmd_doctor(args: argparse.Namespace) -> int:
    from companion.doctor import format_findings, run_checks

    findings = run_checks(args.config, args.data_dir or default_data_dir())
    print(format_findings(findings))
    failed = [f for f in findings if f.level == "fail"]
    print(f"\n{len(failed)} problem(s)" if failed else "\nall good")
    return 1 if failed else 0
