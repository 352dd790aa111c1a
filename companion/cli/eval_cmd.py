"""``companion eval conversations|safety|safety-classifier|quality``: evaluation sets run through the product's own paths.

Every evaluation is reproducible: when neither ``--seed`` nor ``[llm] seed`` gives a seed, seed 0 is
used, at the temperature the config says, so two runs give the same replies.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from companion.config import CompanionConfig
from companion.errors import CompanionError

if TYPE_CHECKING:
    from companion.models.cache import ModelCache


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _folds(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"cross-validation needs 2 folds or more, got {value}")
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
    sc.add_argument("--split", choices=("heldout", "calibration", "train"), default=None,
                    help="the lines to score (default heldout; calibration: the fifth of the training lines "
                         "the model was not fitted on)")
    sc.add_argument("--json", action="store_true", help="the report as JSON, with every line's verdicts")
    sc.add_argument("--cv", type=_folds, default=None, metavar="K",
                    help="K-fold cross-validation on the training corpus instead: trains K models as prepare "
                         "does (~4 min each on 2 cores); progress on stderr")
    sc.add_argument("--cv-dir", type=Path, default=None, metavar="DIR",
                    help="where each fold's result is kept, so a stopped run resumes (default: "
                         "_safety_cv/<corpus>-k<K>-e<epochs> in the model cache)")
    sc.add_argument("--cv-epochs", type=_positive, default=None, metavar="N",
                    help="training epochs a fold (default: prepare's)")
    sc.add_argument("--cv-limit", type=_positive, default=None, metavar="N",
                    help="only the first N lines of each class: a quick smoke for the tests, not a figure")
    sc.set_defaults(func=cmd_eval_safety_classifier)
    q = esub.add_parser("quality", help="reply quality: facts, social fit, echoes, persona leaks, invented "
                                        "facts, repeats (real model; reports, never gates)")
    q.add_argument("file", type=Path)
    q.add_argument("--json", action="store_true", help="the report as JSON, with every line's replies")
    q.add_argument("--seed", type=int, default=None, help="sampling seed (default: [llm] seed, else 0)")
    q.add_argument("--limit", type=_positive, default=None, help="only the first N lines of the file")
    q.add_argument("--model", default=None, help="LLM manifest name instead of [llm] model (compare candidates)")
    q.set_defaults(func=cmd_eval_quality)
    sp = esub.add_parser("speakers", help="who is talking: enrol 4 of the test set's voices, identify everyone's "
                                          "other sentences (synthetic and real adult voices; no language model)")
    sp.add_argument("--model", action="append", default=None,
                    help="speaker encoder manifest instead of [speakers] models (repeat to fuse several)")
    sp.add_argument("--threshold", type=float, default=None, help="instead of [speakers] threshold")
    sp.add_argument("--draws", type=_positive, default=20, help="random choices of the 4 enrolled voices")
    sp.add_argument("--dev", action="store_true", help="score the sentences the threshold is chosen on")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_eval_speakers)


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
    from companion.eval.safety import format_table, load_specs, run_file, summary

    from companion.brain.understanding import load_understanding
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir

    load_specs(args.file)  # a bad file fails before the models load
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

    cv_options = [f"--{name.replace('_', '-')}" for name in ("cv_dir", "cv_epochs", "cv_limit")
                  if getattr(args, name) is not None]
    if args.cv is None and cv_options:
        raise CompanionError(f"{', '.join(cv_options)}: only with --cv K", code="USAGE_INVALID")
    if args.cv is not None and args.split is not None:
        raise CompanionError("--cv scores folds of the training corpus; --split does not go with it",
                             code="USAGE_INVALID")
    config = load_config(args.config)
    cache = ModelCache(models_cache_dir())
    if args.cv is not None:
        return _cross_validate(args, cache, config.knowledge.encoder)
    classifier = load_classifier(cache, config.knowledge.encoder)
    if classifier is None:
        raise ModelError("the safety classifier is not available (see the log); run `companion models prepare`",
                         code="SAFETY_CLASSIFIER_UNAVAILABLE")
    rep = report(classifier, args.split or "heldout")
    print(json.dumps(rep, indent=2, ensure_ascii=False) if args.json else format_table(rep))
    return 0


def _cross_validate(args: argparse.Namespace, cache: ModelCache, encoder: str) -> int:
    """``--cv K``: the cross-validated figures (folds kept in ``--cv-dir``; progress on stderr)."""
    from companion.eval.safety_cv import CvPlan, cross_validate, cv_folder, format_cv_table, summarise_cv
    from companion.safety.train import EPOCHS

    plan = CvPlan(args.cv, args.cv_epochs or EPOCHS, args.cv_limit)
    source = cache.get(encoder).path / "model.zip"  # what prepare trains from (load_classifier)
    folder = args.cv_dir or cv_folder(cache.root, plan)
    results = cross_validate(source, folder, plan, lambda msg: print(f"[cv] {msg}", file=sys.stderr, flush=True))
    rep = {"cv": plan.to_dict(), "folder": str(folder), **summarise_cv(results)}
    print(json.dumps(rep, indent=2, ensure_ascii=False) if args.json else format_cv_table(rep))
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


def cmd_eval_speakers(args: argparse.Namespace) -> int:
    from companion.bench.voices import espeak_available
    from companion.eval.speakers import evaluate
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir, recordings_dir
    from companion.speaker.encoder import open_speaker_encoder
    from companion.tts.piper_voice import PiperTTS

    if not espeak_available():
        raise CompanionError("the speaker test set's voices need espeak-ng from the espeakng-loader package "
                             "(pip install -e '.[test]')", code="EVAL_DEPS_MISSING")
    from companion.config import load_config

    config = load_config(args.config)
    cache = ModelCache(models_cache_dir())
    encoder = open_speaker_encoder(cache, tuple(args.model or config.speakers.models), threads=2)
    from companion.brain.conversation import persona_of

    piper = PiperTTS(cache.get(persona_of(config).voice).path)
    try:
        speakers = config.speakers if args.threshold is None else replace(config.speakers, threshold=args.threshold)
        report = evaluate(encoder, piper, recordings_dir(), speakers, draws=args.draws, dev=args.dev)
    finally:
        encoder.close()
        piper.close()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['model']} at threshold {report['threshold']}: {report['identities']} voices, "
          f"{report['draws']} draws of {report['enrolled_per_draw']} enrolled")
    print(f"  right child {report['accuracy']:.1%} of {report['identified']}; unenrolled accepted "
          f"{report['false_accept']:.1%} of {report['unenrolled_trials']} (real voices {report['false_accept_real']:.1%} "
          f"of {report['real_trials']}); EER {report['eer']:.1%} at {report['eer_threshold']}")
    print(f"  short turns: kept with the same child {report['short_kept_right']:.1%}, taken for another child "
          f"{report['short_taken_for_another_child']:.1%}; {report['embed_ms_p50']} ms an utterance")
    return 0
