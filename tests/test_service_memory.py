"""The service's memory: MemoryMax from the models and the board, doctor's check, and a start that degrades
(a smaller model, or a coded refusal) instead of being killed mid-reply."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from companion.config import CompanionConfig, HardwareConfig, load_config
from companion.doctor import memory_findings
from companion.errors import CompanionError
from companion.models.cache import ModelCache
from companion.models.footprint import memory_need, record_measured_peak
from companion.service import memory as sm

ROOT = Path(__file__).resolve().parents[1]
#: File sizes the real prepared models load (bytes): the shipped manifests' exports.
LOADED = {"qwen2.5-coder-1.5b-instruct": ("llm-onnx", 1_012_901_415),
          "qwen2.5-coder-0.5b-instruct": ("llm-onnx", 367_300_000),
          "whisper-base": ("ctranslate2-whisper", 147_882_941), "piper-en-us-joe-medium": ("piper-voice", 63_206_368),
          "silero-vad-v6": ("none", 1_245_151), "all-minilm-l6-v2": ("sentence-encoder-onnx", 23_414_528)}
BIG = {"llm": "qwen2.5-coder-1.5b-instruct", "asr": "whisper-base", "tts": "piper-en-us-joe-medium",
       "vad": "silero-vad-v6", "encoder": "all-minilm-l6-v2"}
SMALL = {**BIG, "llm": "qwen2.5-coder-0.5b-instruct"}
MIB = 2**20


@pytest.fixture()
def cache(tmp_path) -> ModelCache:
    """Prepared records as the real models have them (the files themselves are not needed)."""
    cache = ModelCache(tmp_path / "cache")
    for name, (recipe, size) in LOADED.items():
        folder = {"llm-onnx": "onnx/", "sentence-encoder-onnx": "encoder/"}.get(recipe, "")
        files = {f"{folder}model.bin": {"size": size, "sha256": "0" * 64},
                 "source.gguf": {"size": 10**9, "sha256": "0" * 64}}  # the source artifact is never loaded
        if not folder:
            files.pop("source.gguf")
        cache.commit(name, cache.new_staging(name), {"recipe": recipe, "role": "?", "files": files})
    return cache


def test_the_estimate_is_above_the_whole_agent_peaks_bench_measured(cache):
    # companion bench, rss_mb (ru_maxrss KiB / 1000): 1,322 with the 0.5B, 2,187 with the 1.5B.
    for models, measured in ((SMALL, 1322), (BIG, 2187)):
        estimate = memory_need(models, cache).estimate_mb
        assert measured * 1000 / 1024 < estimate < 1.15 * measured * 1000 / 1024


def test_a_model_not_prepared_is_named_not_counted(cache):
    """The robot runs without its encoder (no grounding): a missing one must not stop the start."""
    need = memory_need({**BIG, "encoder": "not-prepared"}, cache)
    assert need.missing == ("not-prepared",) and "not-prepared" in need.describe()
    assert need.estimate_mb < memory_need(BIG, cache).estimate_mb


def test_a_measured_peak_above_the_estimate_is_the_need(cache):
    estimate = memory_need(BIG, cache).estimate_mb
    record_measured_peak(cache, BIG, 2900.0)
    need = memory_need(BIG, cache)
    assert estimate < 2900.0 and need.peak_mb == 2900.0 and "measured" in need.source
    assert memory_need(SMALL, cache).measured_mb is None  # another set of models: not measured


def test_memory_max_is_the_peak_plus_a_margin_within_the_boards_budget(cache):
    assert sm.unit_limit_mb(memory_need(BIG, cache).peak_mb, None) == 3000  # the stopgap 3G, now worked out
    assert sm.unit_limit_mb(memory_need(SMALL, cache).peak_mb, None) == 1800
    assert sm.unit_limit_mb(2337, budget_mb=2500.0) == 2500
    assert sm.unit_limit_mb(100, None) == 400  # at least the minimum margin
    pi = HardwareConfig(profile="raspberry-pi-5", memory_reserve_mb=1024)
    assert sm.board_budget_mb(pi, 4096) == 3072
    assert sm.board_budget_mb(replace(pi, memory_budget_mb=2000), 8192) == 2000
    assert sm.board_budget_mb(pi, None) is None


def test_every_board_profile_sets_the_memory_and_the_small_model():
    for profile in ("raspberry-pi-5", "jetson-orin-nano", "generic-x86"):
        config = load_config(_config_file(profile))
        assert config.llm.small_model == "qwen2.5-coder-0.5b-instruct"
        assert config.hardware.memory_reserve_mb >= 1024
    assert load_config(_config_file("jetson-orin-nano")).hardware.memory_reserve_mb == 1536


def _config_file(profile: str) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "c.toml"
    path.write_text(f'[hardware]\nprofile = "{profile}"\n')
    return path


def test_the_start_keeps_the_model_that_fits_else_the_small_one_else_refuses(cache):
    big, small = memory_need(BIG, cache), memory_need(SMALL, cache)
    assert sm.choose_llm(BIG["llm"], big, None).llm == BIG["llm"]  # no limit known
    assert sm.choose_llm(BIG["llm"], big, 3000.0, SMALL["llm"], small).llm == BIG["llm"]
    plan = sm.choose_llm(BIG["llm"], big, 2000.0, SMALL["llm"], small, "the service's MemoryMax")
    assert plan.fallback and plan.llm == SMALL["llm"] and "2,000 MB" in plan.reason
    with pytest.raises(CompanionError) as info:
        sm.choose_llm(BIG["llm"], big, 1000.0, SMALL["llm"], small)
    assert info.value.code == "MEMORY_BUDGET_EXCEEDED"
    with pytest.raises(CompanionError) as info:
        sm.choose_llm(BIG["llm"], big, 2000.0, SMALL["llm"], None)  # the small model is not prepared
    assert info.value.code == "MEMORY_BUDGET_EXCEEDED" and f"companion models prepare {SMALL['llm']}" in str(info.value)
    with pytest.raises(CompanionError):
        sm.choose_llm(BIG["llm"], big, 2000.0)  # no small model named: refuse


def test_companion_run_starts_with_the_small_model_else_refuses(cache, monkeypatch, caplog):
    from companion.cli.voice_cmd import fit_memory

    config = replace(CompanionConfig(), llm=replace(CompanionConfig().llm, small_model=SMALL["llm"]))
    monkeypatch.setenv("COMPANION_MODELS_DIR", str(cache.root))
    monkeypatch.setattr(sm, "configured_models", lambda c: {**BIG, "llm": c.llm.model})
    monkeypatch.setattr(sm, "limit_in_force_mb", lambda _hw: (3000.0, "the service's MemoryMax"))
    assert fit_memory(config) == config
    monkeypatch.setattr(sm, "limit_in_force_mb", lambda _hw: (2000.0, "the service's MemoryMax"))
    with caplog.at_level(logging.WARNING):
        assert fit_memory(config).llm.model == SMALL["llm"]
    assert any("MEMORY_FALLBACK_SMALL_MODEL" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(sm, "limit_in_force_mb", lambda _hw: (1000.0, "the service's MemoryMax"))
    with pytest.raises(CompanionError) as info:
        fit_memory(config)
    assert info.value.code == "MEMORY_BUDGET_EXCEEDED"


def test_companion_run_decides_before_it_opens_or_loads_anything(tmp_path, monkeypatch):
    from companion.cli import voice_cmd

    class Decided(Exception):
        pass

    opened = []
    monkeypatch.setattr(voice_cmd, "_config", lambda _args: CompanionConfig())
    monkeypatch.setattr(voice_cmd, "fit_memory", lambda _c: (_ for _ in ()).throw(Decided()))
    monkeypatch.setattr(voice_cmd, "MemoryStore", lambda *_a: opened.append("memory"))
    args = argparse.Namespace(config=None, child="mia", data_dir=tmp_path, service=True, simulate=None,
                              parent_port=None, seed=None)
    with pytest.raises(Decided):
        voice_cmd.cmd_run(args)
    assert opened == []


def test_memory_max_is_read_from_the_unit_and_its_drop_ins():
    unit = (ROOT / "systemd" / "companion.service").read_text()
    assert sm.unit_memory_max_mb([unit]) == 3072
    assert sm.unit_memory_max_mb([unit, "[Service]\nMemoryMax=2900M\n"]) == 2900
    assert sm.unit_memory_max_mb([unit, "[Service]\nMemoryMax=infinity\n"]) is None
    assert sm.unit_memory_max_mb(["[Service]\nMemoryMax=50%\n"], total_ram_mb=4096) == 2048
    assert sm.unit_memory_max_mb(["[Unit]\nMemoryMax=1G\n"]) is None  # not the [Service] section


def test_doctor_fails_when_the_models_peak_exceeds_the_units_limit(cache):
    unit = (ROOT / "systemd" / "companion.service").read_text()
    hw = HardwareConfig(profile="raspberry-pi-5")
    [tight] = memory_findings(BIG, cache, hw, SMALL["llm"], [unit, "[Service]\nMemoryMax=2G\n"], 8192)
    assert tight.level == "fail" and "2,048 MB" in tight.detail and SMALL["llm"] in tight.detail
    assert "install.sh" in tight.detail
    [fits] = memory_findings(BIG, cache, hw, SMALL["llm"], [unit, "[Service]\nMemoryMax=3000M\n"], 8192)
    assert fits.level == "ok"
    record_measured_peak(cache, BIG, 3100)  # bench measured more than the unit allows
    [measured] = memory_findings(BIG, cache, hw, SMALL["llm"], [unit, "[Service]\nMemoryMax=3000M\n"], 8192)
    assert measured.level == "fail" and "measured" in measured.detail
    [board] = memory_findings(BIG, cache, hw, "", [], 3072)  # not installed, a 3 GB board
    assert board.level == "fail" and "refuses to start" in board.detail


def test_install_writes_the_drop_in_that_memory_max_prints(cache, monkeypatch, capsys):
    from companion.cli.service_cmd import cmd_memory_max

    script = (ROOT / "systemd" / "install.sh").read_text()
    assert "service memory-max" in script and "companion.service.d/memory.conf" in script
    assert script.index("models prepare") < script.index("service memory-max") < script.index("daemon-reload")
    monkeypatch.setenv("COMPANION_MODELS_DIR", str(cache.root))
    monkeypatch.setattr(sm, "configured_models", lambda _c: BIG)
    monkeypatch.setattr("companion.hardware.memory_total_bytes", lambda: 8 * 2**30)
    assert cmd_memory_max(argparse.Namespace(config=None, json=False)) == 0
    dropin = capsys.readouterr().out
    assert sm.unit_memory_max_mb([dropin]) == 3000 and dropin.startswith("# ")
