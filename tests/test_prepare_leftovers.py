"""What an interrupted prepare leaves in the model cache: removed at the next prepare, reported, named by doctor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import namedtuple

import pytest

from companion.doctor import cache_leftovers
from companion.models.cache import ModelCache
from companion.models.prepare import import_llm, prepare
from tests.test_prepare import _manifest, _wheel, house  # noqa: F401 - the fixture

_usage = namedtuple("usage", "total used free")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(cache: ModelCache, name: str, pid: int, size: int = 3_000_000):
    folder = cache.root / f".staging-{name}-{pid}"
    (folder / "_work").mkdir(parents=True)
    with (folder / "_work" / "model.onnx.data").open("wb") as fh:
        fh.truncate(size)  # sparse: its size counts, no time is spent writing it
    return folder


def test_prepare_removes_a_dead_prepares_staging_first_and_reports_what_it_freed(tmp_path, house, monkeypatch,  # noqa: F811
                                                                                 caplog):
    """The disk is full only because of the leftover: the prepare must remove it before it checks free space."""
    import shutil

    cache = ModelCache(tmp_path / "cache")
    stale = _leftover(cache, "qwen-big", _dead_pid(), size=14_000_000_000)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda _p: _usage(10**12, 0, 1000 if stale.exists() else 10**12))
    with caplog.at_level("INFO", logger="companion.models.cache"):
        result = prepare(house[0], cache, progress=False)
    assert result.status == "prepared" and not stale.exists()
    assert [(f.path, f.size) for f in result.freed] == [(stale, 14_000_000_000)]
    assert any(stale.name in r.getMessage() and "14.0 GB freed" in r.getMessage() for r in caplog.records)


def test_import_llm_removes_leftovers_before_it_starts(tmp_path, monkeypatch):
    cache = ModelCache(tmp_path / "cache")
    stale = _leftover(cache, "mine", _dead_pid())
    monkeypatch.setattr(cache, "check_free_space", lambda *_a: (_ for _ in ()).throw(AssertionError("too late")))
    with pytest.raises(Exception):
        import_llm(str(tmp_path / "missing.gguf"), "mine", cache)
    assert not stale.exists()


def test_a_running_prepares_staging_stays_and_a_reused_pid_does_not_keep_one(tmp_path):
    cache = ModelCache(tmp_path / "cache")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.1)
        live = _leftover(cache, "busy", sleeper.pid)
        mine = _leftover(cache, "self", os.getpid())
        assert {f.path: f.stale for f in cache.leftovers()} == {live: False, mine: False}
        assert cache.remove_leftovers() == [] and live.exists() and mine.exists()
        # The same number, but a process that started after the folder was last written (a reboot reuses ids).
        an_hour_ago = time.time() - 3600
        os.utime(live, (an_hour_ago, an_hour_ago))
        assert [f.path for f in cache.remove_leftovers()] == [live] and not live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_prepare_killed_between_its_two_renames_gets_its_previous_copy_back(tmp_path):
    cache = ModelCache(tmp_path / "cache")
    old = cache.root / f".old-vad-{_dead_pid()}"
    old.mkdir(parents=True)
    (old / "prepared.json").write_text('{"files": {}}')
    cache.remove_leftovers()
    assert cache.record("vad") == {"files": {}} and not old.exists()


def test_doctor_names_each_leftover_with_its_size(tmp_path):
    cache = ModelCache(tmp_path / "cache")
    assert cache_leftovers(cache) == []
    stale = _leftover(cache, "qwen", _dead_pid(), size=14_000_000_000)
    findings = cache_leftovers(cache)
    assert [(f.level, f.check) for f in findings] == [("warn", "model cache")]
    assert str(stale) in findings[0].detail and "14.0 GB" in findings[0].detail
    assert "companion models prepare" in findings[0].detail


def test_cli_prepare_reports_the_space_it_freed(tmp_path):
    data = os.urandom(1000)
    _, sha = _wheel(tmp_path / "house", "small-model", {"small_model/a.bin": data})
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "small.toml").write_text(_manifest("small", "small-model", sha, ["small_model/a.bin"], data))
    cache = ModelCache(tmp_path / "cache")
    stale = _leftover(cache, "big", _dead_pid(), size=14_000_000_000)
    env = {**os.environ, "COMPANION_MANIFESTS_DIR": str(manifests), "COMPANION_MODELS_DIR": str(cache.root),
           "COMPANION_WHEELHOUSE": str(tmp_path / "house"), "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    proc = subprocess.run([sys.executable, "-m", "companion", "models", "prepare", "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert "small: prepared" in proc.stdout
    assert f"removed {stale}" in proc.stderr and "14.0 GB freed" in proc.stderr
