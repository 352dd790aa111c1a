"""``companion bench llm``: report figures (never pass/fail)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from companion.config import load_config
from companion.models.cache import ModelCache
from companion.paths import models_cache_dir


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure the whole loop (or one part: llm, memory, facts)",
                       description="Without a subcommand: the whole voice loop on a fixed utterance set "
                                   "(the recordings the project carries + generated speech).")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE", help="PNG of one turn's stage timeline")
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances (a quick look)")
    p.add_argument("--audio-dir", type=Path, default=None,
                   help="recordings with a README of reference transcripts "
                        "(default: the project's own, companion/data/recordings)")
    p.add_argument("--asr-model", default=None, help="e.g. whisper-tiny-en (default: the config's)")
    p.add_argument("--asr-window", choices=("fit", "full"), default=None, help="Whisper encoder window")
    p.add_argument("--early-end-ms", type=int, default=None, help="tentative end of speech (0: off)")
    p.add_argument("--end-silence-ms", type=int, default=None, help="silence that ends an utterance")
    p.add_argument("--no-turn-model", action="store_true",
                   help="end turns by the silence rule (to compare with the end-of-turn model in one sitting)")
    p.add_argument("--no-speakers", action="store_true",
                   help="no child enrolled by voice (the speaker encoder never runs), to compare in one sitting")
    p.add_argument("--no-service", action="store_true", help="skip start-to-ready and idle CPU (a subprocess)")
    p.add_argument("--no-llm-alone", action="store_true", help="skip the LLM-alone tokens/s and llama.cpp ratio")
    p.add_argument("--cloud-price", type=float, default=None, metavar="USD",
                   help="cloud price per 1,000 tokens for the cost comparison")
    p.set_defaults(func=cmd_bench)
    bsub = p.add_subparsers(dest="bench_command", required=False)
    lp = bsub.add_parser("llm", help="language model: TTFT, tokens/s, RSS (and llama.cpp if installed)")
    lp.add_argument("--json", action="store_true")
    lp.add_argument("--runs", type=int, default=3, help="passes over the prompt set")
    lp.add_argument("--max-new-tokens", type=int, default=48)
    lp.add_argument("--spin", action="store_true",
                    help="let onnxruntime's threads spin (faster alone; the loop runs without, see README)")
    lp.add_argument("--genai-model", type=Path, default=None,
                    help="also time this onnxruntime-genai model folder (made by its model builder)")
    lp.set_defaults(func=cmd_bench_llm)
    mp = bsub.add_parser("memory", help="prompt assembly time with 10,000 stored turns")
    mp.add_argument("--json", action="store_true")
    mp.add_argument("--turns", type=int, default=10_000)
    mp.set_defaults(func=cmd_bench_memory)
    kp = bsub.add_parser("knowledge", help="fact-card retrieval time (sentence encoder + index)")
    kp.add_argument("--json", action="store_true")
    kp.set_defaults(func=cmd_bench_knowledge)
    sp = bsub.add_parser("safety", help="safety classifier: time per check and the memory it adds")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_bench_safety)
    tp = bsub.add_parser("turn", help="end of turn alone: early ends and waits per vote, the model's time a call")
    tp.add_argument("--json", action="store_true")
    tp.add_argument("--limit", type=int, default=None, help="only the first N utterances (a quick look)")
    tp.set_defaults(func=cmd_bench_turn)
    cp = bsub.add_parser("compare", help="two `companion bench --json` runs, utterance by utterance: a change "
                                         "or noise? (median change of first audio with a 95 %% interval)")
    cp.add_argument("before", type=Path)
    cp.add_argument("after", type=Path)
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=cmd_bench_compare)
    fp = bsub.add_parser("facts", help="fact extraction: rules vs the language model")
    fp.add_argument("--json", action="store_true")
    fp.set_defaults(func=cmd_bench_facts)


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from companion.bench import loop

    config = load_config(args.config)
    asr = config.asr
    if args.asr_model:
        asr = replace(asr, model=args.asr_model)
    if args.asr_window:
        asr = replace(asr, window=args.asr_window)
    vad = config.vad
    if args.early_end_ms is not None:
        vad = replace(vad, early_end_ms=args.early_end_ms)
    if args.end_silence_ms is not None:
        vad = replace(vad, end_silence_ms=args.end_silence_ms)
    config = replace(config, asr=asr, vad=vad)
    if args.no_turn_model:
        config = replace(config, turn=replace(config.turn, enabled=False))
    figures = loop.run(config, ModelCache(models_cache_dir()), audio_dir=args.audio_dir, limit=args.limit,
                       service=not args.no_service, config_path=args.config, llm_isolated=not args.no_llm_alone,
                       speakers=not args.no_speakers,
                       cloud_price_per_1k=args.cloud_price if args.cloud_price is not None else loop.DEFAULT_CLOUD_PRICE)
    if args.limit is None and figures.get("rss_mb"):
        # The whole agent's peak with these models: doctor and the unit's MemoryMax use it from now on.
        from companion.models.footprint import record_measured_peak
        from companion.service.memory import configured_models

        record_measured_peak(ModelCache(models_cache_dir()), configured_models(config),
                             figures["rss_mb"] * 1000 / 1024)  # rss_mb is ru_maxrss (KiB) / 1000; here MiB
    if args.plot is not None and figures["example_turn"]:
        from companion.bench.plot import timeline_png

        timeline_png(figures["example_turn"], args.plot)
        figures["plot"] = str(args.plot)
    print(json.dumps(figures, indent=2) if args.json else loop.format_report(figures))
    return 0


def cmd_bench_knowledge(args: argparse.Namespace) -> int:
    from companion.bench import knowledge as bench_knowledge
    from companion.errors import CompanionError
    from companion.knowledge.index import load_knowledge
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir

    config = load_config(args.config)
    knowledge = load_knowledge(config.knowledge, ModelCache(models_cache_dir()))
    if knowledge is None:
        raise CompanionError("grounding is off or its encoder is not prepared (companion models prepare)",
                             code="KNOWLEDGE_UNAVAILABLE")
    figures = bench_knowledge.run(knowledge)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"retrieval over {figures['cards']} cards ({figures['rows']} rows): median "
              f"{figures['retrieval_ms_median']} ms, p95 {figures['retrieval_ms_p95']} ms, max "
              f"{figures['retrieval_ms_max']} ms; misheard questions (respelt second lookup): median "
              f"{figures['misheard_ms_median']} ms, {figures['misheard_with_a_card']:.0%} find a card")
    return 0


def cmd_bench_safety(args: argparse.Namespace) -> int:
    from companion.bench import safety as bench_safety
    from companion.errors import CompanionError
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir
    from companion.safety.classifier import load_classifier

    config = load_config(args.config)

    def load():
        classifier = load_classifier(ModelCache(models_cache_dir()), config.knowledge.encoder)
        if classifier is None:
            raise CompanionError("the safety classifier is not available (companion models prepare)",
                                 code="SAFETY_CLASSIFIER_UNAVAILABLE")
        return classifier

    def robot_has_loaded():  # onnxruntime and the knowledge encoder are loaded on the robot anyway
        from companion.encoder.runtime import load_encoder

        encoder = load_encoder(config.knowledge.encoder, ModelCache(models_cache_dir()))
        if encoder is not None:
            encoder.encoder.encode_one("warm up")
        return encoder

    figures = bench_safety.run(load, before_load=robot_has_loaded)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"safety classifier: input check median {figures['input_ms_median']} ms (p95 "
              f"{figures['input_ms_p95']}), output check median {figures['output_ms_median']} ms (p95 "
              f"{figures['output_ms_p95']}), RSS +{figures['rss_growth_mb']} MB")
    return 0


def cmd_bench_memory(args: argparse.Namespace) -> int:
    from companion.bench import memory
    from companion.brain.conversation import load_generator

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
    from companion.brain.conversation import load_generator

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

    from dataclasses import replace

    config = load_config(args.config)
    if args.spin:
        config = replace(config, llm=replace(config.llm, spin=True))
    figures = llm.run(config, ModelCache(models_cache_dir()), runs=args.runs,
                      max_new_tokens=args.max_new_tokens, genai_model=args.genai_model)
    print(json.dumps(figures, indent=2) if args.json else llm.format_table(figures))
    return 0


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from companion.bench import compare
    from companion.errors import CompanionError

    runs = []
    for path in (args.before, args.after):
        try:
            runs.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            raise CompanionError(f"cannot read {path} as `companion bench --json` output: {err}",
                                 code="BENCH_INPUT_INVALID") from err
    try:
        figures = compare.compare(*runs)
    except (KeyError, TypeError, ValueError) as err:
        raise CompanionError(f"cannot compare these runs: {err!r}", code="BENCH_INPUT_INVALID") from err
    print(json.dumps(figures, indent=2) if args.json else compare.format_report(figures))
    return 0


def cmd_bench_turn(args: argparse.Namespace) -> int:
    from types import SimpleNamespace

    from companion.asr.whisper import WhisperASR
    from companion.bench import end_of_turn
    from companion.bench.loop import utterance_set
    from companion.brain.conversation import persona_of
    from companion.tts.piper_voice import PiperTTS
    from companion.turn.model import SmartTurn

    config = load_config(args.config)
    cache = ModelCache(models_cache_dir())
    asr = WhisperASR(cache.get(config.asr.model).path, config.asr)
    tts = PiperTTS(cache.get(persona_of(config).voice).path)
    model = SmartTurn(cache.get(config.turn.model).path, threads=config.turn.threads)
    try:
        voice = SimpleNamespace(tts=tts, vad_path=cache.get(config.vad.model).path / "silero_vad_v6.onnx")
        utterances, _, _ = utterance_set(voice, None, args.limit, cache.get(config.asr.model).path)
        figures = end_of_turn.run(config, cache, utterances, model, asr)
    finally:
        asr.close()
        tts.close()
        model.close()
    print(json.dumps(figures, indent=2) if args.json else end_of_turn.format_report(figures))
    return 0
