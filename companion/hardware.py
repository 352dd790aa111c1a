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
    """The chosen profile as a config dict (its [hardware] table reduced to name and power)."""
    available = profiles(folder)
    name = detect(folder=folder) if choice == "auto" else choice
    if name not in available:
        raise ConfigError(f"hardware profile '{name}' not found; known: {', '.join(available)}")
    data = {k: dict(v) for k, v in available[name].items()}
    meta = data.pop("hardware", {})
    data["hardware"] = {"profile": name, "power_watts": float(meta.get("power_watts", 10.0))}
    return data


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def describe() -> str:
    return f"board '{board_model() or 'none'}', cpu {platform.machine()}"
