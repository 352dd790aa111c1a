"""The memory a running companion takes with a given set of prepared models: estimated from the
files each model loads, and measured by ``companion bench`` where it has run with that set.

Every figure is in MB of 2**20 bytes (systemd's ``M``). The estimate is fitted to whole-agent
measurements (``companion bench``, peak RSS, generic-x86 profile: whisper-base, piper joe,
silero, all-MiniLM): 1,291 MB with the 0.5B language model (350 MB of ONNX files), 2,136 MB with
the 1.5B (966 MB); the other models load 225 MB. That is ~500 MB for Python and the runtimes plus
~1.37 bytes of RSS per byte of model files loaded (the weights, onnxruntime's arena, the KV
cache); made 550 MB + 1.5 x here, which gives 1,413 and 2,336 MB.

A measurement is kept in ``<cache>/_measured/agent-rss.json`` per set of models (role=name).
The figure used is the larger of the estimate and the measurement: a measured peak can only
raise the need, never hide a bigger estimate.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from companion.models.cache import ModelCache

#: Python, numpy, onnxruntime, CTranslate2, the memory database and the dashboard, without models.
AGENT_BASE_MB = 550.0
#: RSS per byte of model files a model loads (fitted 1.37 on the measurements above; rounded up).
RSS_PER_FILE_BYTE = 1.5
#: The files a recipe's runtime loads, by folder (the source artifact beside them, a GGUF or a zip,
#: is never loaded); recipes not named load every file they prepared.
_LOADED_FOLDER = {"llm-onnx": "onnx/", "sentence-encoder-onnx": "encoder/", "speaker-ge2e-onnx": "speaker/"}
#: Measured model sets kept at most (the oldest go first).
MAX_MEASUREMENTS = 32
MEASURED_FILE = Path("_measured") / "agent-rss.json"


@dataclass(frozen=True)
class ModelShare:
    """One prepared model's part of the estimate."""

    role: str
    name: str
    #: Bytes of the files its runtime loads.
    loaded_bytes: int
    #: Estimated RSS it adds, in MB.
    rss_mb: float


@dataclass(frozen=True)
class MemoryNeed:
    """What the companion needs with one set of models: the estimate, and a measurement if there is one."""

    models: tuple[ModelShare, ...]
    estimate_mb: float
    #: Peak RSS ``companion bench`` measured with exactly these models (None: never measured).
    measured_mb: float | None = None
    #: Models not prepared, so not counted (the robot runs without an encoder; the others fail to load).
    missing: tuple[str, ...] = ()

    @property
    def peak_mb(self) -> float:
        return max(self.estimate_mb, self.measured_mb or 0.0)

    @property
    def source(self) -> str:
        if self.measured_mb is not None and self.measured_mb >= self.estimate_mb:
            return "measured by companion bench"
        return "estimated from the model files" + (" (above the measured peak)" if self.measured_mb else "")

    def describe(self) -> str:
        names = ", ".join(f"{m.role} {m.name}" for m in self.models)
        missing = f"; not prepared, not counted: {', '.join(self.missing)}" if self.missing else ""
        return f"{self.peak_mb:,.0f} MB ({self.source}; {names}{missing})"


def loaded_bytes(record: dict) -> int:
    folder = _LOADED_FOLDER.get(record.get("recipe", ""), "")
    return sum(meta["size"] for rel, meta in record.get("files", {}).items() if rel.startswith(folder))


def _key(models: dict[str, str]) -> str:
    return ",".join(f"{role}={name}" for role, name in sorted(models.items()))


def measured_peak_mb(cache: ModelCache, models: dict[str, str]) -> float | None:
    try:
        data = json.loads((cache.root / MEASURED_FILE).read_text(encoding="utf-8"))
        return float(data[_key(models)]["rss_mb"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # never measured (or an unreadable file): the estimate alone decides


def record_measured_peak(cache: ModelCache, models: dict[str, str], rss_mb: float) -> None:
    """Keep the whole agent's peak RSS measured with ``models`` (``companion bench``), atomically."""
    path = cache.root / MEASURED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data.pop(_key(models), None)
    data[_key(models)] = {"rss_mb": round(rss_mb, 1), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    while len(data) > MAX_MEASUREMENTS:
        data.pop(next(iter(data)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def memory_need(models: dict[str, str], cache: ModelCache) -> MemoryNeed:
    """The need of ``models`` (role -> prepared model name); one not prepared is left out and named."""
    shares, missing = [], []
    for role, name in models.items():
        record = cache.record(name)
        if record is None:
            missing.append(name)
            continue
        size = loaded_bytes(record)
        shares.append(ModelShare(role, name, size, RSS_PER_FILE_BYTE * size / 2**20))
    estimate = AGENT_BASE_MB + sum(s.rss_mb for s in shares)
    return MemoryNeed(tuple(shares), estimate, measured_peak_mb(cache, models), tuple(missing))
