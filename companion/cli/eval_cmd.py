"""``companion eval conversations|safety|safety-classifier|quality``: evaluation sets run through the product's own paths.

Every evaluation is reproducible: when neither ``--seed`` nor ``[llm] seed`` gives a seed, seed 0 is
used, at the temperature the config says, so two runs give the same replies.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from companion.config import CompanionConfig
from companion.errors import CompanionError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_parser(sub) -> None:
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
    sc = esub.add_parser("safety-classifier", help="the safety layers on the corpus's held-out split, per "
                                                  "category (no language model)")
    sc.add_argument("--split", choices=("heldout", "train"), default="heldout")
    sc.add_argument("--json", action="store_true", help="the report as JSON, with every line's verdicts")
    sc.set_defaults(func=cmd_eval_safety_classifier)
    q = esub.add_parser("quality", help="reply quality: facts, social fit, echoes, persona leaks, invented "
                                        "facts, repeats (real model; reports, never gates)")
    q.add_argument("file", type=Path)
    q.add_argument("--json", action="store_true", help="the report as JSON, with every line's replies")
    q.add_argument("--seed", type=int, default=None, help="sampling seed (default: [llm] seed, else 0)")
    q.add_argument("--limit", type=_positive, default=None, help="only the first N lines of the file")
    q.add_argument("--model", default=None, help="LLM manifest name instead of [llm] model (compare candidates)")
    q.set_defaults(func=cmd_eval_quality)


def _reproducible(config: CompanionConfig, seed: int | None = None) -> CompanionConfig:
    """The config with a fixed sampling seed: the one given, the configured one, else 0."""
    chosen = seed if seed is not None else config.llm.seed if config.llm.seed is not None else 0
    return replace(config, llm=replace(config.llm, seed=chosen))


def cmd_eval_conversations(args: argparse.Namespace) -> int:
    from companion.brain.conversation import load_generator
    from companion.config import load_config
    from companion.eval.conversations import format_table, run_file

    config = _reproducible(load_config(args.config))
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
    from companion.brain.conversation import load_generator
    from companion.config import load_config
    from companion.eval.safety import format_table, run_file, summary

    from companion.brain.understanding import load_understanding
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir

    config = _reproducible(load_config(args.config))
    generator = load_generator(config)
    try:
        # As the robot runs: fact cards and the safety classifier over the one encoder.
        understanding = load_understanding(config, ModelCache(models_cache_dir()))
        report = summary(run_file(args.file, generator, config, understanding))
    finally:
        generator.close()
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_table(report))
    return 0


def cmd_eval_safety_classifier(args: argparse.Namespace) -> int:
    from companion.config import load_config
    from companion.errors import ModelError
    from companion.eval.safety_classifier import format_table, report
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir
    from companion.safety.classifier import load_classifier

    config = load_config(args.config)
    classifier = load_classifier(ModelCache(models_cache_dir()), config.knowledge.encoder)
    if classifier is None:
        raise ModelError("the safety classifier is not available (see the log); run `companion models prepare`",
                         code="SAFETY_CLASSIFIER_UNAVAILABLE")
    rep = report(classifier, args.split)
    print(json.dumps(rep, indent=2, ensure_ascii=False) if args.json else format_table(rep))
    return 0


def _llm_model(name: str) -> str:
    """``name`` when it is a language-model manifest; a coded error listing the ones there are otherwise."""
    from companion.models.manifest import load_manifests
    from companion.paths import manifests_dir

    manifests = load_manifests(manifests_dir())
    llms = [m.name for m in manifests.values() if m.role == "llm"]
    if name not in llms:
        raise CompanionError(f"--model {name!r} is not a language model manifest; known: {', '.join(llms)}",
                             code="MODEL_UNKNOWN")
    return name


def cmd_eval_quality(args: argparse.Namespace) -> int:
    from companion.brain.conversation import load_generator, persona_of
    from companion.config import load_config
    from companion.eval.quality import format_table, load_items, run_items, summary
    from companion.brain.understanding import load_understanding
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir

    config = load_config(args.config)
    if args.model:
        config = replace(config, llm=replace(config.llm, model=_llm_model(args.model)))
    config = _reproducible(config, args.seed)
    items = load_items(args.file)[: args.limit]  # a bad file fails before the model loads
    persona = persona_of(config)
    generator = load_generator(config)
    try:
        understanding = load_understanding(config, ModelCache(models_cache_dir()))
        results = run_items(items, generator, config, persona, understanding.knowledge, understanding.safety)
    finally:
        generator.close()
    report = {"file": str(args.file), "model": config.llm.model, "seed": config.llm.seed,
              "temperature": config.llm.temperature, "persona": persona.name,
              "knowledge": config.knowledge.enabled, **summary(results)}
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_table(report))
    return 0  # it reports; it does not gate
