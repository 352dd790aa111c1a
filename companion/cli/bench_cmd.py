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
    mp = bsub.add_parser("memory", help="prompt assembly time with 10,000 stored turns")
    mp.add_argument("--json", action="store_true")
    mp.add_argument("--turns", type=int, default=10_000)
    mp.set_defaults(func=cmd_bench_memory)
    fp = bsub.add_parser("facts", help="fact extraction: rules vs the language model")
    fp.add_argument("--json", action="store_true")
    fp.set_defaults(func=cmd_bench_facts)


def cmd_bench_memory(args: argparse.Namespace) -> int:
    from companion.bench import memory
    from companion.chat import load_generator

    config = load_config(args.config)
    generator = load_generator(config)
    try:
        figures = memory.run(config, generator, turns=args.turns)
    finally:
        generator.close()
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"prompt assembly with {figures['turns']} stored turns: median {figures['assemble_ms_median']} ms, "
              f"max {figures['assemble_ms_max']} ms; longest prompt {figures['prompt_tokens_max']} tokens "
              f"(budget {figures['prompt_budget']})")
    return 0


def cmd_bench_facts(args: argparse.Namespace) -> int:
    from companion.bench import facts
    from companion.chat import load_generator

    generator = load_generator(load_config(args.config))
    try:
        report = facts.run(generator)
    finally:
        generator.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in ("rules", "model"):
            r = report[name]
            print(f"{name:6} exact {r['exact']:.2f}  precision {r['precision']:.2f}  recall {r['recall']:.2f}  "
                  f"{r['ms_per_utterance']} ms per utterance  ({report['sentences']} sentences)")
    return 0


def cmd_bench_llm(args: argparse.Namespace) -> int:
    from companion.bench import llm

    figures = llm.run(load_config(args.config), ModelCache(models_cache_dir()), runs=args.runs,
                      max_new_tokens=args.max_new_tokens, genai_model=args.genai_model)
    print(json.dumps(figures, indent=2) if args.json else llm.format_table(figures))
    return 0
