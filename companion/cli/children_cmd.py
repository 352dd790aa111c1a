"""``companion children consent|enroll|voices|forget-voice``: who the robot knows by voice."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from companion.brain.conversation import check_child_name
from companion.config import load_config
from companion.errors import CompanionError
from companion.memory.store import MemoryStore
from companion.paths import default_data_dir


def add_parser(sub) -> None:
    p = sub.add_parser("children", help="recognise each child by voice: consent, enrol, list, forget")
    csub = p.add_subparsers(dest="children_command", required=True)
    c = csub.add_parser("consent", help="the parents' consent to voiceprints (off erases every voiceprint)")
    c.add_argument("state", choices=("on", "off"))
    e = csub.add_parser("enroll", help="make a child's voiceprint from recordings of them (about 20 s of speech)")
    e.add_argument("child")
    e.add_argument("audio", nargs="+", type=Path, help="audio files of the child speaking (WAV/FLAC/MP3...)")
    e.add_argument("--json", action="store_true")
    v = csub.add_parser("voices", help="whose voice the robot knows")
    v.add_argument("--json", action="store_true")
    f = csub.add_parser("forget-voice", help="erase a child's voiceprint (their memory stays)")
    f.add_argument("child")
    for q in (c, e, v, f):
        q.add_argument("--data-dir", type=Path, default=None)
        q.set_defaults(func=cmd_children)


def cmd_children(args: argparse.Namespace) -> int:
    from companion.parent import settings as parent_settings

    store = MemoryStore(args.data_dir or default_data_dir())
    try:
        if args.children_command == "consent":
            on = args.state == "on"
            from dataclasses import replace

            parent_settings.save(store, replace(parent_settings.load(store), voice_id=on))
            print("children are recognised by voice (voiceprints stay on this robot)" if on
                  else "voice recognition is off; every voiceprint is erased")
            return 0
        if args.children_command == "voices":
            info = store.voiceprint_info()
            if args.json:
                print(json.dumps({"consent": parent_settings.load(store).voice_id, "voices": info}, indent=1))
                return 0
            print(f"consent: {'on' if parent_settings.load(store).voice_id else 'off'}")
            for row in info:
                when = time.strftime("%Y-%m-%d", time.localtime(row["enrolled_at"]))
                print(f"  {row['child']}: {row['utterances']} recordings, {row['speech_s']} s of speech, enrolled "
                      f"{when} ({row['model']})")
            if not info:
                print("  no voiceprints")
            return 0
        if args.children_command == "forget-voice":
            child = check_child_name(args.child)
            if not store.delete_voiceprint(child):
                raise CompanionError(f"no voiceprint of a child named {child!r}", code="SPEAKER_UNKNOWN")
            print(f"erased {child}'s voiceprint")
            return 0
        return _enroll(args, store)
    finally:
        store.close()


def _enroll(args: argparse.Namespace, store: MemoryStore) -> int:
    from companion.audio.files import read_all
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir
    from companion.speaker.encoder import open_speaker_encoder
    from companion.speaker.enrol import enrol, require_consent

    child = check_child_name(args.child)
    require_consent(store)  # before any audio is read
    recordings = [read_all(path, max_seconds=120.0) for path in args.audio]
    config = load_config(args.config)
    cache = ModelCache(models_cache_dir())
    encoder = open_speaker_encoder(cache, config.speakers.models, threads=2)
    try:
        result = enrol(store, encoder, child, recordings)
    finally:
        encoder.close()
    if args.json:
        print(json.dumps({"child": result.child, "model": result.model, "utterances": result.utterances,
                          "speech_s": result.speech_s, "agreement": list(result.agreement), "note": result.note}))
    else:
        print(f"enrolled {child}: {result.utterances} recordings, {result.speech_s} s of speech")
        if result.note:
            print(f"note: {result.note}")
    return 0
