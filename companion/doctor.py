"""``companion doctor``: is this robot ready? One actionable line per check; non-zero exit on a problem."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from companion.errors import CompanionError

MIN_FREE_BYTES = 500_000_000


@dataclass(frozen=True)
class Finding:
    level: str  # "ok" | "warn" | "fail"
    check: str
    detail: str


def run_checks(config_path: Path | None, data_dir: Path) -> list[Finding]:
    from companion.config import load_config

    out: list[Finding] = []
    try:
        config = load_config(config_path)
    except CompanionError as err:
        return [Finding("fail", "config", f"[{err.code}] {err.message}")]
    out.append(Finding("ok", "config", "configuration is valid"))

    from companion.hardware import describe

    out.append(Finding("ok", "hardware", f"profile {config.hardware.profile} ({describe()}); "
                                         f"llm threads {config.llm.threads}, asr {config.asr.model} "
                                         f"{config.asr.device}/{config.asr.compute_type}"))
    out += _models(config)
    out += _leftovers()
    out += _memory(config)
    out += _providers(config)
    out += _remote(config)
    out += _audio(config)
    out += _storage(data_dir)
    return out


def _models(config) -> list[Finding]:
    from companion.brain.conversation import persona_of
    from companion.models.cache import ModelCache
    from companion.models.manifest import load_manifests
    from companion.models.prepare import verify
    from companion.paths import manifests_dir, models_cache_dir

    cache = ModelCache(models_cache_dir())
    manifests = load_manifests(manifests_dir())
    out = []
    try:
        voice = persona_of(config).voice
    except CompanionError as err:
        return [Finding("fail", "persona", f"[{err.code}] {err.message}")]
    roles = [("llm", config.llm.model), ("asr", config.asr.model), ("tts", voice), ("vad", config.vad.model)]
    if config.knowledge.enabled:
        roles.append(("encoder", config.knowledge.encoder))
    for role, name in roles:
        if name in manifests:
            problems = verify(manifests[name], cache)
        elif cache.record(name) is not None:
            from companion.models.prepare import check_files

            problems = check_files(cache.get(name))
        else:
            out.append(Finding("fail", f"model {role}", f"{name} is neither in models/ nor imported"))
            continue
        if not problems:
            out.append(Finding("ok", f"model {role}", f"{name} prepared, checksums match"))
        elif problems == ["not prepared"]:
            out.append(Finding("fail", f"model {role}", f"{name} is not prepared in {cache.root}; run "
                                                         f"`companion models prepare {name}`"))
        else:
            out.append(Finding("fail", f"model {role}", f"{name}: {problems[0]}; run `companion models prepare "
                                                         f"{name}`"))
    if config.safety.classifier:
        out.append(_safety_classifier(cache))
    if config.turn.enabled:
        out.append(_optional_model("turn", config.turn.model, manifests, cache, "turns end by the silence rule"))
    if config.speakers.enabled:
        out += [_optional_model("speaker", name, manifests, cache, "enrolled children are not told apart by voice")
                for name in config.speakers.models]
    return out


def _optional_model(role: str, name: str, manifests, cache, without: str) -> Finding:
    """A model the robot works without (the end-of-turn model, the speaker encoder): a warning, saying what
    is lost, when it is not prepared."""
    from companion.models.prepare import verify

    if name not in manifests:
        return Finding("fail", f"model {role}", f"{name} is not in models/")
    problems = verify(manifests[name], cache)
    if not problems:
        return Finding("ok", f"model {role}", f"{name} prepared, checksums match")
    return Finding("warn", f"model {role}", f"{name}: {problems[0]}; {without} until "
                                            f"`companion models prepare {name}`")


def _safety_classifier(cache) -> Finding:
    """The fine-tuned safety classifier for the current corpus (trained by ``companion models prepare``)."""
    from companion.safety.classifier import trained_folder

    folder = trained_folder(cache.root)
    if (folder / "heads.json").is_file() and (folder / "model.onnx").is_file():
        return Finding("ok", "safety classifier", f"trained for this corpus ({folder.name})")
    return Finding("warn", "safety classifier", "not trained for this corpus: the robot trains it at its first "
                                                "start (~4 min), or run `companion models prepare`; until then "
                                                "the lexicon and the profanity model decide alone")


def _leftovers() -> list[Finding]:
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir

    return cache_leftovers(ModelCache(models_cache_dir()))


def cache_leftovers(cache) -> list[Finding]:
    """Folders of interrupted prepares in the model cache, each named with its size (a 1.5B export's
    scratch is 14 GB: a robot's whole SD card). Nothing here: no line."""
    out = []
    for leftover in cache.leftovers():
        size = f"{leftover.size / 1e9:.1f} GB"
        if leftover.stale:
            out.append(Finding("warn", "model cache", f"{leftover.path} ({size}) is left by an interrupted prepare "
                                                      f"(pid {leftover.pid} is gone); the next `companion models "
                                                      f"prepare` removes it, or delete it"))
        else:
            out.append(Finding("ok", "model cache", f"{leftover.path} ({size}): a prepare in progress "
                                                    f"(pid {leftover.pid})"))
    return out


def _memory(config) -> list[Finding]:
    from companion.hardware import memory_total_bytes
    from companion.models.cache import ModelCache
    from companion.paths import models_cache_dir
    from companion.service.memory import configured_models, installed_unit_texts

    total = memory_total_bytes()
    try:
        models = configured_models(config)
    except CompanionError as err:
        return [Finding("fail", "memory", f"[{err.code}] {err.message}")]
    return memory_findings(models, ModelCache(models_cache_dir()), config.hardware, config.llm.small_model,
                           installed_unit_texts(), total / 2**20 if total else None)


def memory_findings(models: dict[str, str], cache, hardware, small_model: str, unit_texts: list[str],
                    total_ram_mb: float | None) -> list[Finding]:
    """The configured models' peak (measured by `companion bench`, else estimated) against the installed
    unit's MemoryMax, or, with no unit installed, against the board's budget."""
    from companion.models.footprint import memory_need
    from companion.service.memory import board_budget_mb, unit_memory_max_mb

    need = memory_need(models, cache)
    then = f"the service starts with {small_model} instead" if small_model else "the service refuses to start"
    fix = "re-run systemd/install.sh (it writes MemoryMax from the models: `companion service memory-max`)"
    limit = unit_memory_max_mb(unit_texts, total_ram_mb)
    if unit_texts and limit is not None:
        if need.peak_mb > limit:
            return [Finding("fail", "memory", f"the configured models need about {need.describe()}, more than the "
                                              f"unit's MemoryMax of {limit:,.0f} MB: {then}; {fix}, or configure "
                                              f"a smaller model")]
        return [Finding("ok", "memory", f"the configured models need about {need.describe()}; the unit's MemoryMax "
                                        f"is {limit:,.0f} MB")]
    budget = board_budget_mb(hardware, total_ram_mb)
    where = "the unit has no MemoryMax" if unit_texts else "the service is not installed"
    if budget is not None and need.peak_mb > budget:
        return [Finding("fail", "memory", f"the configured models need about {need.describe()}, more than the "
                                          f"{hardware.profile} board's budget of {budget:,.0f} MB ({where}): {then}")]
    detail = f"of the board's {budget:,.0f} MB" if budget is not None else "(the board's memory is unknown)"
    return [Finding("warn" if unit_texts else "ok", "memory",
                    f"the configured models need about {need.describe()} {detail}; {where}")]


def _providers(config) -> list[Finding]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in config.llm.providers if p not in available]
    if missing:
        return [Finding("warn", "execution providers", f"{', '.join(missing)} not in this onnxruntime build "
                                                       f"(has {', '.join(available)}); the CPU will be used. "
                                                       f"See hardware/jetson.md")]
    return [Finding("ok", "execution providers", ", ".join(config.llm.providers))]


def _remote(config) -> list[Finding]:
    """Each stage handed to a Wyoming server: does it answer ``describe`` with that stage, now?"""
    import asyncio

    from companion.wyoming.remote import describe

    out = []
    for stage, uri in (("asr", config.remote.asr), ("tts", config.remote.tts), ("handle", config.remote.handle)):
        if not uri:
            continue
        try:
            info = asyncio.run(describe(uri, timeout_s=config.remote.connect_timeout_s + 2.0))
        except Exception as err:  # noqa: BLE001 - any failure is the finding
            out.append(Finding("warn", f"remote {stage}", f"{uri} does not answer ({type(err).__name__}: {err}); "
                                                          f"the robot's own model answers until it does"))
            continue
        programs = [p.name for p in getattr(info, stage) if p.installed]
        if programs:
            out.append(Finding("ok", f"remote {stage}", f"{uri} serves {', '.join(programs)} (the robot's own "
                                                        f"model answers when it is down or slow)"))
        else:
            out.append(Finding("warn", f"remote {stage}", f"{uri} answers but serves no {stage}; the robot's own "
                                                          f"model answers"))
    return out


def _audio(config) -> list[Finding]:
    from companion.audio.devices import find_device, sounddevice

    try:
        sd = sounddevice()
        devices = [dict(d) for d in sd.query_devices()]
        default_in, default_out = sd.default.device
    except CompanionError as err:
        return [Finding("fail", "microphone", f"[{err.code}] {err.message}"),
                Finding("fail", "speaker", f"[{err.code}] {err.message}")]
    out = []
    for kind, label, hint, default, hints in (
            ("input", "microphone", config.audio.input_device, default_in, config.audio.input_hints),
            ("output", "speaker", config.audio.output_device, default_out, config.audio.output_hints)):
        try:
            idx = find_device(devices, hint, kind, default, hints)
            out.append(Finding("ok", label, f"{idx}: {devices[idx]['name']}"))
        except CompanionError as err:
            out.append(Finding("fail", label, f"[{err.code}] {err.message}"))
    return out


def _storage(data_dir: Path) -> list[Finding]:
    from companion.memory.store import MemoryStore

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return [Finding("fail", "data folder", f"cannot create {data_dir}: {err}")]
    free = shutil.disk_usage(data_dir).free
    out = [Finding("ok" if free >= MIN_FREE_BYTES else "fail", "disk",
                   f"{free / 1e9:.1f} GB free for the memory database in {data_dir}"
                   + ("" if free >= MIN_FREE_BYTES else "; free some space (at least 0.5 GB)"))]
    try:
        store = MemoryStore(data_dir)
        ok = store.integrity_ok()
        store.close()
        out.append(Finding("ok" if ok else "fail", "memory database",
                           "integrity ok" if ok else "integrity check failed; back it up and erase it"))
    except CompanionError as err:
        out.append(Finding("fail", "memory database", f"[{err.code}] {err.message}"))
    return out


def format_findings(findings: list[Finding]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    return "\n".join(f"{marks[f.level]}  {f.check:20} {f.detail}" for f in findings)
