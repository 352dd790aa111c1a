"""``companion chat``: a text conversation with the real model, one child utterance per stdin line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from companion.brain.understanding import load_understanding
from companion.models.cache import ModelCache
from companion.paths import models_cache_dir
from companion.brain.conversation import Conversation, check_child_name, load_generator
from companion.memory.store import MemoryStore
from companion.config import load_config
from companion.paths import default_data_dir


def add_parser(sub) -> None:
    p = sub.add_parser("chat", help="talk to the robot in text (stdin lines in, replies out)")
    p.add_argument("--child", default=None, help="which child is talking (default: children.default in config)")
    p.add_argument("--data-dir", type=Path, default=None, help="state folder (default: user data dir)")
    p.add_argument("--json", action="store_true", help="one JSON object per reply")
    p.add_argument("--seed", type=int, default=None, help="sampling seed for reproducible replies")
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.seed is not None:
        from dataclasses import replace

        config = replace(config, llm=replace(config.llm, seed=args.seed))
    child = check_child_name(args.child or config.children.default)
    memory = MemoryStore(args.data_dir or default_data_dir())
    generator = load_generator(config)
    understanding = load_understanding(config, ModelCache(models_cache_dir()))
    conversation = Conversation(generator, config, child, memory, understanding.knowledge, understanding.safety)

    async def session() -> int:
        try:
            return await _loop(conversation, args.json)
        finally:
            await conversation.close()

    try:
        return asyncio.run(session())
    finally:
        generator.close()
        memory.close()


async def _loop(conversation: Conversation, as_json: bool) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Talking to {conversation.persona.name} as {conversation.child}. Ctrl-D to stop.", file=sys.stderr)
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return 0
        heard = line.strip()
        if not heard:
            continue
        # Printed only once checked: nothing reaches the child before the safety layer has seen it.
        reply = await conversation.reply(heard)
        if as_json:
            print(json.dumps(reply.to_json(), ensure_ascii=False), flush=True)
        else:
            print(reply.reply, flush=True)
