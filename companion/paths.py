"""Where the product keeps things on disk. Nothing here is computed at import time."""

from __future__ import annotations

import os
from pathlib import Path

#: Folder of the repository's model manifests (``models/*.toml``).
#: The manifests ship inside the source tree; an installed wheel can point
#: ``COMPANION_MANIFESTS_DIR`` at its own copy.
def manifests_dir() -> Path:
    env = os.environ.get("COMPANION_MANIFESTS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models"


def configs_dir() -> Path:
    env = os.environ.get("COMPANION_CONFIGS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "configs"


def models_cache_dir() -> Path:
    """Prepared models live here, outside git: ``COMPANION_MODELS_DIR`` or the XDG cache."""
    env = os.environ.get("COMPANION_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "companion" / "models"


def default_data_dir() -> Path:
    """Per-child state (memory, transcripts): ``COMPANION_DATA_DIR`` or the XDG data dir."""
    env = os.environ.get("COMPANION_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "companion"


def recordings_dir() -> Path:
    """Real recorded speech the project carries (``companion/data/recordings``: faster-whisper's test data,
    MIT, with its README of reference transcripts and its LICENSE): the recordings of ``companion bench``.
    Package data, so an installed companion finds them as well as a clone does."""
    return Path(__file__).resolve().parent / "data" / "recordings"


def shared_eval_dir() -> Path:
    """The workplace's evaluation sets (``*.jsonl``: safety, conversations): ``COMPANION_EVAL_DIR`` or
    ``../shared/eval`` beside the repository. Read from there, never copied into the repository."""
    env = os.environ.get("COMPANION_EVAL_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
