"""``companion bench llm``: report figures (never pass/fail)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from companion.config import load_config
from companion.models.cache import ModelCache
from companion.paths import models_cache_dir


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure speed and memory")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    lp = bsub.add_parser("llm", help="language model: TTFT, tokens/s, RSS (and llama.cpp if installed)")
    lp.add_argument("--json", action="store_true")
    lp.add_argument("--runs", type=int, default=3, help="passes over the prompt set")
    lp.add_argument("--max-new-tokens", type=int, default=48)
    lp.add_argument("--genai-model", type=Path, default=None,
                    help="also time this onnxruntime-genai model folder (made by its model builder)")
    lp.set_defaults(func=cmd_bench_llm)


def cmd_bench_llm(args: argparse.Namespace) -> int:
    from companion.bench import llm

    figures = llm.run(load_config(args.config), ModelCache(models_cache_dir()), runs=args.runs,
                      max_new_tokens=args.max_new_tokens, genai_model=args.genai_model)
    print(json.dumps(figures, indent=2) if args.json else llm.format_table(figures))
    return 0
