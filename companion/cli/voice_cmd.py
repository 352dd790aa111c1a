"""``companion simulate`` (files and generated speech in, WAVs and turns.jsonl out) and ``companion run``."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from companion.audio.sources import Segment
from companion.brain.conversation import check_child_name, persona_of
from companion.memory.store import MemoryStore
from companion.memory.worker import MemoryWorker
from companion.paths import default_data_dir
from companion.config import CompanionConfig, load_config
from companion.voice.events import TurnRecord


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="run the voice loop on audio files and scripted speech, no microphone")
    p.add_argument("inputs", nargs="*", type=Path, help="audio files (WAV/FLAC/MP3...), each one or more utterances")
    p.add_argument("--say", action="append", default=[], help="a child utterance, spoken by the TTS (repeatable)")
    p.add_argument("--barge-in", action="append", default=[],
                   help="an utterance spoken over the robot's previous reply, 1 s after it starts talking")
    p.add_argument("--out", type=Path, required=True, help="folder for turns.jsonl and WAV files")
    p.add_argument("--child", default=None)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--echo", type=float, default=0.0, help="mix the robot's own voice into the mic at this gain")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_simulate)

    r = sub.add_parser("run", help="the robot: live microphone and speaker")
    r.add_argument("--child", default=None)
    r.add_argument("--data-dir", type=Path, default=None)
    r.add_argument("--service", action="store_true",
                   help="run as a systemd service: READY/STATUS/WATCHDOG/STOPPING on NOTIFY_SOCKET")
    r.add_argument("--simulate", type=Path, nargs="+", default=None, metavar="AUDIO",
                   help="use these audio files as the microphone (then silence) and a simulated speaker")
    r.add_argument("--parent-port", type=int, default=None, metavar="PORT",
                   help="also serve the parents' dashboard on this port (all interfaces)")
    r.set_defaults(func=cmd_run)


def _config(args) -> CompanionConfig:
    config = load_config(args.config)
    if getattr(args, "seed", None) is not None:
        from dataclasses import replace

        config = replace(config, llm=replace(config.llm, seed=args.seed))
    return config


def print_transcript(records: list[TurnRecord], name: str, file=sys.stdout) -> None:
    for r in records:
        t = r.timings
        cut = " [interrupted]" if r.interrupted else ""
        print(f"\nchild: {r.heard}\n{name}: {r.reply}{cut}", file=file)
        print(f"       asr {t.asr_ms} ms | llm first token {t.llm_first_token_ms} ms | "
              f"tts first chunk {t.tts_first_chunk_ms} ms | ttfa {t.ttfa_ms} ms", file=file)
    ttfa = [r.timings.ttfa_ms for r in records if r.timings.ttfa_ms is not None]
    if ttfa:
        print(f"\n{len(records)} turns; ttfa median {statistics.median(ttfa):.0f} ms, max {max(ttfa):.0f} ms", file=file)


def cmd_simulate(args: argparse.Namespace) -> int:
    from companion.voice.runtime import load_voice_models
    from companion.voice.simulate import run_simulation_sync, spoken

    config = _config(args)
    child = check_child_name(args.child or config.children.default)
    if not args.inputs and not args.say:
        from companion.errors import CompanionError

        raise CompanionError("give at least one audio file or --say line", code="SIMULATE_NO_INPUT")
    for path in args.inputs:  # fail early, with the file's own coded error
        from companion.audio.files import read_chunks

        next(iter(read_chunks(path, chunk_samples=1600)))
    models = load_voice_models(config)
    try:
        segments = [Segment(path, label=path.name) for path in args.inputs]
        segments += [Segment(spoken(models, text), label=text) for text in args.say]
        for text in args.barge_in:
            segments.append(Segment(spoken(models, text), start="during_reply", gap_s=1.0, label=text))
        result = run_simulation_sync(models, config, segments, args.out, child=child, echo_gain=args.echo,
                                     memory=MemoryStore(args.data_dir or default_data_dir()))
    finally:
        models.close()
    print_transcript(result.records, persona_of(config).name)
    print(f"\nwrote {args.out}/turns.jsonl, reply-NNN.wav, conversation.wav")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The robot. One path for a terminal and for systemd: the notify messages are no-ops without
    NOTIFY_SOCKET; only at a terminal (no --service) are the child's and the robot's words printed."""
    import asyncio

    from companion.audio.sinks import SimulatedSpeaker
    from companion.audio.sources import SimulatedMicrophone
    from companion.service.notify import Notifier
    from companion.service.runner import install_stop_signals, serve
    from companion.voice.runtime import load_voice_models

    config = fit_memory(_config(args))
    child = check_child_name(args.child or config.children.default)
    memory = MemoryStore(args.data_dir or default_data_dir())
    worker = MemoryWorker(memory)
    notifier = Notifier()
    notifier.status("loading models")
    if args.simulate is None:
        from companion.voice.live import open_devices, pick_devices

        mic, speaker = pick_devices(config)  # fail before minutes of model loading
    else:
        from companion.audio.files import read_chunks

        for path in args.simulate:
            next(iter(read_chunks(path, chunk_samples=1600)))
    models = load_voice_models(config)

    async def main() -> int:
        stop = asyncio.Event()
        install_stop_signals(stop)
        if args.simulate is None:
            frames, player = open_devices(config, mic, speaker, models.tts.rate)
        else:
            player = SimulatedSpeaker(models.tts.rate)
            segments = [Segment(p, label=p.name) for p in args.simulate]
            frames = lambda loop: SimulatedMicrophone(segments, idle=loop.is_idle, player=player,  # noqa: E731
                                                      endless=True).frames()
        dashboard = None
        if args.parent_port is not None:
            from companion.cli.parent_cmd import serve as serve_dashboard

            # Through the loop's own memory worker: its handlers run in order with the loop's writes, on
            # that thread, so an erase's VACUUM never stalls audio.
            dashboard = asyncio.create_task(serve_dashboard(worker, config, "0.0.0.0", args.parent_port),
                                            name="parent-dashboard")
        try:
            return await serve(models, config, child, worker, frames, player, notifier, stop=stop,
                               on_event=None if args.service else _print_words)
        finally:
            if dashboard is not None:
                dashboard.cancel()
                await asyncio.gather(dashboard, return_exceptions=True)

    try:
        turns = asyncio.run(main())
    finally:
        models.close()
        worker.close()  # queued writes finish first
        memory.close()
        notifier.close()
    print(f"stopped after {turns} turns")
    return 0


def fit_memory(config: CompanionConfig) -> CompanionConfig:
    """The config the robot starts with: the configured language model where its peak fits the memory this
    process may use (the unit's MemoryMax, else the board's budget), else the profile's small model (a
    logged MEMORY_FALLBACK_SMALL_MODEL), else MEMORY_BUDGET_EXCEEDED. Decided before any model is loaded,
    so that the kernel never kills the robot in the middle of a reply."""
    import logging
    from dataclasses import replace

    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir
    from companion.service.memory import MEMORY_FALLBACK_SMALL_MODEL, plan_start

    plan = plan_start(config, ModelCache(models_cache_dir()))
    if not plan.fallback:
        return config
    logging.getLogger(__name__).warning("[%s] %s", MEMORY_FALLBACK_SMALL_MODEL, plan.reason)
    return replace(config, llm=replace(config.llm, model=plan.llm))


def _print_words(event) -> None:
    from companion.voice.events import ClauseSpoken, Transcribed

    if isinstance(event, Transcribed):
        print(f"child: {event.text}", flush=True)
    elif isinstance(event, ClauseSpoken):
        print(f"robot: {event.text}", flush=True)
