"""``companion``: entry point and sub-command dispatch.

Every failure that a person can act on exits with status 2 and one line
``error [CODE] message`` on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from companion.errors import CompanionError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="companion", description="On-device voice companion for children.")
    parser.add_argument("--config", type=Path, default=None, help="config file (default configs/companion.toml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    from companion.cli import (bench_cmd, chat_cmd, children_cmd, demo_cmd, eval_cmd, memory_cmd, models_cmd,
                               parent_cmd, service_cmd, voice_cmd, wyoming_cmd)

    models_cmd.add_parser(sub)
    chat_cmd.add_parser(sub)
    bench_cmd.add_parser(sub)
    demo_cmd.add_parser(sub)
    voice_cmd.add_parser(sub)
    memory_cmd.add_parser(sub)
    children_cmd.add_parser(sub)
    eval_cmd.add_parser(sub)
    parent_cmd.add_parser(sub)
    service_cmd.add_parser(sub)
    wyoming_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Under systemd, journald stamps the time itself: one line per event, level, logger, coded message.
    under_journald = "JOURNAL_STREAM" in os.environ or "NOTIFY_SOCKET" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s" if under_journald else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=fmt, stream=sys.stderr)
    logging.getLogger("faster_whisper").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except CompanionError as err:
        print(f"error [{err.code}] {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
