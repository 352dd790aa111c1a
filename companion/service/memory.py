"""The memory the service may use, and what it starts with so that it is never killed mid-reply.

One rule, three users: ``systemd/install.sh`` writes the unit's ``MemoryMax`` from it
(``companion service memory-max``), ``companion doctor`` fails when the configured models need
more than the unit allows, and ``companion run`` checks it before loading anything: a model that
does not fit is replaced by the profile's ``small_model`` (MEMORY_FALLBACK_SMALL_MODEL, logged),
or the service refuses to start (MEMORY_BUDGET_EXCEEDED). The kernel's OOM killer never gets to
choose, in the middle of a reply, what the robot gives up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from companion.config import CompanionConfig, HardwareConfig
from companion.errors import CompanionError
from companion.models.cache import ModelCache
from companion.models.footprint import MemoryNeed, memory_need

MEMORY_BUDGET_EXCEEDED = "MEMORY_BUDGET_EXCEEDED"
MEMORY_FALLBACK_SMALL_MODEL = "MEMORY_FALLBACK_SMALL_MODEL"
#: Headroom over the models' peak in the unit's limit: a longer reply, a bigger prompt, the allocator.
MARGIN = 0.25
#: ... and at least this, in MB.
MIN_MARGIN_MB = 256
#: The limit is written in steps of this many MB.
STEP_MB = 100
#: Where systemd reads the installed unit and its drop-ins.
UNIT_DIR = Path("/etc/systemd/system")
UNIT = "companion.service"


def configured_models(config: CompanionConfig) -> dict[str, str]:
    """Role -> model name of every model the running companion loads."""
    from companion.persona import load_persona

    models = {"llm": config.llm.model, "asr": config.asr.model, "tts": load_persona(config.persona.use).voice,
              "vad": config.vad.model}
    if config.knowledge.enabled:
        models["encoder"] = config.knowledge.encoder
    if config.turn.enabled:
        models["turn"] = config.turn.model
    if config.speakers.enabled:
        models.update({f"speaker{i or ''}": name for i, name in enumerate(config.speakers.models)})
    return models


def board_budget_mb(hardware: HardwareConfig, total_ram_mb: float | None) -> float | None:
    """What the service may use on this board: its RAM less the profile's reserve, within the profile's
    budget when it names one. None: neither is known."""
    limits = []
    if total_ram_mb is not None:
        limits.append(max(0.0, total_ram_mb - hardware.memory_reserve_mb))
    if hardware.memory_budget_mb:
        limits.append(float(hardware.memory_budget_mb))
    return min(limits) if limits else None


def unit_limit_mb(need_mb: float, budget_mb: float | None) -> int:
    """The unit's MemoryMax for a peak of ``need_mb``: the peak plus the margin, rounded up to a step,
    within the board's budget (then the configured model does not fit, and the service starts smaller)."""
    wanted = need_mb + max(need_mb * MARGIN, MIN_MARGIN_MB)
    limit = math.ceil(wanted / STEP_MB) * STEP_MB
    if budget_mb is not None:
        limit = min(limit, int(budget_mb // STEP_MB) * STEP_MB)
    return int(limit)


@dataclass(frozen=True)
class StartPlan:
    """The language model the service starts with, and why."""

    llm: str
    need: MemoryNeed
    #: The limit it was held against, in MB (None: no limit known).
    limit_mb: float | None
    #: The configured model did not fit; ``llm`` is the small one.
    fallback: bool = False
    reason: str = ""


def choose_llm(configured: str, need: MemoryNeed, limit_mb: float | None, small: str = "",
               small_need: MemoryNeed | None = None, where: str = "the limit") -> StartPlan:
    """Pure: the configured model when its peak fits ``limit_mb``, else the small one when that fits,
    else MEMORY_BUDGET_EXCEEDED."""
    if limit_mb is None or need.peak_mb <= limit_mb:
        return StartPlan(configured, need, limit_mb)
    too_big = (f"the configured models need about {need.describe()}, more than {where} of {limit_mb:,.0f} MB")
    if small and small != configured and small_need is not None and small_need.peak_mb <= limit_mb:
        return StartPlan(small, small_need, limit_mb, fallback=True,
                         reason=f"{too_big}; starting with the small language model {small} "
                                f"({small_need.peak_mb:,.0f} MB) instead")
    if small and small != configured and small_need is None:
        hint = f"prepare the small model (`companion models prepare {small}`), "
    else:
        hint = "set a smaller [llm] model, "
    raise CompanionError(f"{too_big}; {hint}or give the service more memory (systemd/install.sh writes "
                         f"MemoryMax from the models)", code=MEMORY_BUDGET_EXCEEDED)


def limit_in_force_mb(hardware: HardwareConfig) -> tuple[float | None, str]:
    """The limit this process runs under: its cgroup's (the unit's MemoryMax), else the board's budget."""
    from companion.hardware import cgroup_memory_limit, memory_total_bytes

    cgroup = cgroup_memory_limit()
    if cgroup is not None:
        return cgroup[0] / 2**20, "the service's MemoryMax"
    total = memory_total_bytes()
    return board_budget_mb(hardware, total / 2**20 if total else None), f"the {hardware.profile} board's budget"


def plan_start(config: CompanionConfig, cache: ModelCache) -> StartPlan:
    """Which language model ``companion run`` may load here (reads the cache and the cgroup)."""
    models = configured_models(config)
    need = memory_need(models, cache)
    limit, where = limit_in_force_mb(config.hardware)
    small = config.llm.small_model
    small_need = None
    if small and small != config.llm.model and cache.record(small) is not None:
        small_need = memory_need({**models, "llm": small}, cache)
    return choose_llm(config.llm.model, need, limit, small, small_need, where)


def _megabytes(value: str, total_ram_mb: float | None) -> float | None:
    """A systemd memory size (``3G``, ``2900M``, ``3221225472``, ``75%``, ``infinity``) in MB (2**20)."""
    value = value.strip()
    if value in ("", "infinity"):
        return None
    if value.endswith("%"):
        return None if total_ram_mb is None else total_ram_mb * float(value[:-1]) / 100
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", value)
    if match is None:
        return None
    scale = {"": 2**-20, "K": 2**-10, "M": 1, "G": 2**10, "T": 2**20}[match.group(2)]
    return float(match.group(1)) * scale


def unit_memory_max_mb(texts: list[str], total_ram_mb: float | None = None) -> float | None:
    """MemoryMax of a unit from its file and drop-ins, in the order systemd reads them (the last wins)."""
    found: float | None = None
    for text in texts:
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line
            elif section == "[Service]" and line.startswith("MemoryMax="):
                found = _megabytes(line.split("=", 1)[1], total_ram_mb)
    return found


def installed_unit_texts(unit_dir: Path = UNIT_DIR) -> list[str]:
    """The installed unit and its drop-ins (``companion.service.d/*.conf``, in name order); [] if none."""
    paths = [unit_dir / UNIT, *sorted((unit_dir / f"{UNIT}.d").glob("*.conf"))]
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except OSError:
            continue
    return texts


def dropin(need: MemoryNeed, limit_mb: int, budget_mb: float | None, profile: str) -> str:
    """The drop-in systemd/install.sh writes to ``/etc/systemd/system/companion.service.d/memory.conf``."""
    budget = f"{budget_mb:,.0f} MB" if budget_mb is not None else "unknown"
    return (f"# Written by systemd/install.sh (`companion service memory-max`): the configured models' peak,\n"
            f"# {need.describe()},\n"
            f"# plus {MARGIN:.0%} (at least {MIN_MARGIN_MB} MB), within the {profile} board's budget ({budget}).\n"
            f"[Service]\nMemoryMax={limit_mb}M\n")
