"""``companion wyoming``: serve the robot's stages (asr, tts, the child-safe brain) over Wyoming."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from companion.config import load_config
from companion.models.cache import ModelCache
from companion.paths import default_data_dir, models_cache_dir

log = logging.getLogger(__name__)

DEFAULT_URI = "tcp://127.0.0.1:10700"


def add_parser(sub) -> None:
    p = sub.add_parser("wyoming", help="serve asr, tts and the child-safe brain over the Wyoming protocol "
                                       "(Home Assistant, satellites, a robot using this machine's stages)")
    p.add_argument("--uri", default=DEFAULT_URI,
                   help=f"where to listen: tcp://HOST:PORT or unix://PATH (default {DEFAULT_URI}; "
                        "tcp://0.0.0.0:10700 for the home network)")
    p.add_argument("--stages", default="asr,tts,handle",
                   help="comma-separated stages to serve, of asr, tts, handle (default: all three)")
    p.add_argument("--data-dir", type=Path, default=None, help="state folder: the children's memory (handle)")
    p.set_defaults(func=cmd_wyoming)


def parse_stages(text: str) -> set[str]:
    from companion.errors import ConfigError

    stages = {s.strip() for s in text.split(",") if s.strip()}
    unknown = stages - {"asr", "tts", "handle"}
    if unknown or not stages:
        raise ConfigError(f"--stages takes asr, tts and/or handle, not {text!r}")
    return stages


def cmd_wyoming(args: argparse.Namespace) -> int:
    from companion.asr.whisper import WhisperASR
    from companion.brain.conversation import Conversation, load_generator, persona_of
    from companion.brain.understanding import load_understanding
    from companion.memory.store import MemoryStore
    from companion.models.manifest import load_manifests
    from companion.paths import manifests_dir
    from companion.tts.piper_voice import PiperTTS
    from companion.wyoming.info import build_info
    from companion.wyoming.server import Stages, serve

    config = load_config(args.config)
    wanted = parse_stages(args.stages)
    cache = ModelCache(models_cache_dir())
    manifests = load_manifests(manifests_dir())
    persona = persona_of(config)
    asr = tts = generator = memory = None
    brains: dict[str, Conversation] = {}
    try:
        if "asr" in wanted:
            asr = WhisperASR(cache.get(config.asr.model).path, config.asr)
            asr.warm()
        if "tts" in wanted:
            tts = PiperTTS(cache.get(persona.voice).path)
            tts.warm()
        brain_for = None
        if "handle" in wanted:
            generator = load_generator(config, cache)
            understanding = load_understanding(config, cache)
            memory = MemoryStore(args.data_dir or default_data_dir())

            def open_brain(child: str | None, guest: bool = False) -> Conversation:
                name = child or config.children.default
                key = f"{name}\0guest" if guest else name
                if key not in brains:
                    brains[key] = Conversation(generator, config, name, memory, understanding.knowledge,
                                               understanding.safety, guest=guest)
                return brains[key]

            brain_for = open_brain
            brain_for(None)  # a bad default child name fails here, at start, not at the first request
        info = build_info(asr=manifests.get(config.asr.model) if asr else None, asr_languages=[config.asr.language],
                          tts=manifests.get(persona.voice) if tts else None,
                          tts_language=tts.language if tts else None,
                          llm=manifests.get(config.llm.model) if generator else None, persona=persona.name)
        stages = Stages(info=info, asr=asr, tts=tts, brain_for=brain_for, max_audio_s=config.voice.max_heard_s)

        def ready() -> None:
            log.info("companion wyoming: serving %s on %s", ", ".join(sorted(wanted)), args.uri)
            print(f"serving {', '.join(sorted(wanted))} on {args.uri}", flush=True)

        async def main() -> None:
            try:
                await serve(args.uri, stages, ready=ready)
            finally:
                for brain in brains.values():
                    await brain.close()

        asyncio.run(main())
        return 0
    finally:
        for stage in (asr, tts, generator, memory):
            if stage is not None:
                stage.close()
