"""Hardware profiles (``hardware/*.toml``): chosen from the board, overridden by the config file."""

from __future__ import annotations

import os
import platform
import tomllib
from pathlib import Path

from companion.errors import ConfigError


def hardware_dir() -> Path:
    env = os.environ.get("COMPANION_HARDWARE_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "hardware"


def board_model() -> str:
    """The board's own name (device tree), or '' on a PC."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(path).read_bytes().rstrip(b"\0").decode(errors="replace")
        except OSError:
            continue
    return ""


def profiles(folder: Path | None = None) -> dict[str, dict]:
    folder = folder or hardware_dir()
    out = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            out[path.stem] = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"hardware profile {path} is not valid TOML: {err}") from err
    return out


def detect(model: str | None = None, machine: str | None = None, folder: Path | None = None) -> str:
    """The profile whose ``match`` strings appear in the board model; else by CPU architecture."""
    model = board_model() if model is None else model
    available = profiles(folder)
    for name, data in available.items():
        if any(m.lower() in model.lower() for m in data.get("hardware", {}).get("match", [])):
            return name
    return "generic-x86"


def profile_defaults(choice: str = "auto", folder: Path | None = None) -> dict:
    """The chosen profile as a config dict (its [hardware] table reduced to name, power and memory)."""
    available = profiles(folder)
    name = detect(folder=folder) if choice == "auto" else choice
    if name not in available:
        raise ConfigError(f"hardware profile '{name}' not found; known: {', '.join(available)}")
    data = {k: dict(v) for k, v in available[name].items()}
    meta = data.pop("hardware", {})
    data["hardware"] = {"profile": name, "power_watts": float(meta.get("power_watts", 10.0)),
                        **{k: meta[k] for k in ("memory_budget_mb", "memory_reserve_mb") if k in meta}}
    return data


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _meminfo(key: str) -> int | None:
    """A figure of /proc/meminfo in bytes (it gives kB); None off Linux."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_files() -> list[tuple[Path, Path]]:
    """(limit, usage) files of this process's memory cgroup, v2 and v1."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            base = Path("/sys/fs/cgroup") / parts[2].lstrip("/")
            out.append((base / "memory.max", base / "memory.current"))
        elif "memory" in parts[1].split(","):
            base = Path("/sys/fs/cgroup/memory") / parts[2].lstrip("/")
            out.append((base / "memory.limit_in_bytes", base / "memory.usage_in_bytes"))
    return out


def cgroup_memory_limit() -> tuple[int, int] | None:
    """(limit, usage) in bytes of the memory cgroup this process runs in (a unit's ``MemoryMax``);
    None where there is no limit or it cannot be read."""
    for limit_file, usage_file in _cgroup_files():
        try:
            raw = limit_file.read_text().strip()
            if raw == "max" or int(raw) >= 1 << 60:  # v1 writes "no limit" as a huge number
                continue
            return int(raw), int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def memory_total_bytes() -> int | None:
    """The machine's RAM as the kernel sees it (MemTotal)."""
    return _meminfo("MemTotal")


def memory_available_bytes() -> int | None:
    """Memory a new process can take without swapping: MemAvailable, less where this process's cgroup
    has less room left. None where neither can be read (then no check can be made)."""
    figures = [f for f in (_meminfo("MemAvailable"),) if f is not None]
    limit = cgroup_memory_limit()
    if limit is not None:
        figures.append(max(0, limit[0] - limit[1]))
    return min(figures) if figures else None


def describe() -> str:
    return f"board '{board_model() or 'none'}', cpu {platform.machine()}"
