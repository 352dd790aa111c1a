"""The export's peak memory, estimated from the checkpoint before it starts; a refusal when the machine has less."""

from __future__ import annotations

import json
import struct

import pytest

from companion.errors import ModelError
from companion.models import prepare as prep
from companion.models.cache import ModelCache
from companion.models.export_memory import export_peak_bytes, parameter_count, params_from_config, params_from_gguf

#: The two shipped language models as the GGUF export writes their config.json (untied output matrix).
QWEN_1_5B = {"hidden_size": 1536, "num_hidden_layers": 28, "intermediate_size": 8960, "vocab_size": 151936,
             "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": False}
QWEN_0_5B = {"hidden_size": 896, "num_hidden_layers": 24, "intermediate_size": 4864, "vocab_size": 151936,
             "num_attention_heads": 14, "num_key_value_heads": 2, "tie_word_embeddings": False}
GB = 1e9


def _checkpoint(folder, config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_parameter_counts_match_the_real_checkpoints():
    # Both figures are the tensors' element counts in the shipped GGUF files.
    assert params_from_config(QWEN_1_5B) == 1_777_088_000
    assert params_from_config(QWEN_0_5B) == 630_167_424
    tied = params_from_config({**QWEN_1_5B, "tie_word_embeddings": True})
    assert tied == 1_777_088_000 - 151936 * 1536


@pytest.mark.parametrize("config,quantize,measured_gb,whole", [
    (QWEN_1_5B, "int4", 15.9, True),  # the issue's measurement (our own: 11.4)
    (QWEN_1_5B, "int8", 20.6, False),  # stopped there, still rising
    (QWEN_0_5B, "int8", 11.1, True),
    (QWEN_0_5B, "none", 6.3, True),
    (QWEN_0_5B, "int4", 6.0, True),
])
def test_the_estimate_is_above_every_measured_peak_and_not_far_above(config, quantize, measured_gb, whole):
    estimate = export_peak_bytes(params_from_config(config), quantize)
    assert estimate > measured_gb * GB
    if whole:  # conservative, but not so much that a machine which can do it is refused
        assert estimate < 1.3 * measured_gb * GB


def test_int8_needs_about_twice_int4():
    params = params_from_config(QWEN_1_5B)
    assert 1.6 < export_peak_bytes(params, "int8") / export_peak_bytes(params, "int4") < 2.0


def _gguf(path, tensors: dict[str, tuple[int, ...]], payload: int = 0):
    """A GGUF v3 header: one string, one string array and one uint32 of metadata, then the tensor infos."""
    def s(text):
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 3)
    out += s("general.name") + struct.pack("<I", 8) + s("tiny")
    out += s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("a") + s("bb") + s("<|im_end|>")
    out += s("qwen2.block_count") + struct.pack("<II", 4, 2)
    for name, dims in tensors.items():
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", 12, 0)
    path.write_bytes(out + b"\0" * payload)
    return path


def test_a_gguf_is_counted_from_its_header_and_from_its_size_when_that_is_unreadable(tmp_path):
    gguf = _gguf(tmp_path / "m.gguf", {"token_embd.weight": (896, 1000), "blk.0.attn_q.weight": (896, 896)})
    assert params_from_gguf(gguf) == 896 * 1000 + 896 * 896 == parameter_count(str(gguf))
    damaged = tmp_path / "d.gguf"
    damaged.write_bytes(gguf.read_bytes()[:40] + b"\xff" * 1000)
    assert params_from_gguf(damaged) == int(damaged.stat().st_size / 0.5)
    assert parameter_count("Qwen/Qwen2.5-0.5B-Instruct") is None  # a hub id: unknown before the export


class _NoExport:
    """Stands in for the exporter's process: the refusal must come before it starts."""

    started = []

    def __init__(self, cmd, **_kwargs):
        self.started.append(cmd)
        self.returncode = 1
        self.stderr = iter(["[export] exporting\n"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _no_export_cache(tmp_path, monkeypatch, available_gb: float) -> ModelCache:
    """A cache whose exports never start a process, on a machine with ``available_gb`` of memory."""
    _NoExport.started = []
    monkeypatch.setattr(prep.subprocess, "Popen", _NoExport)
    monkeypatch.setattr(prep, "memory_available_bytes", lambda: int(available_gb * 10**9))
    cache = ModelCache(tmp_path / "cache")
    monkeypatch.setattr(cache, "check_free_space", lambda *_a: None)
    return cache


def test_import_llm_refuses_before_exporting_when_memory_is_short(tmp_path, monkeypatch):
    cache = _no_export_cache(tmp_path, monkeypatch, 12)
    ckpt = _checkpoint(tmp_path / "qwen15", QWEN_1_5B)
    with pytest.raises(ModelError) as info:
        prep.import_llm(str(ckpt), "qwen15", cache, quantize="int4")
    assert info.value.code == "OUT_OF_MEMORY" and _NoExport.started == []
    assert "17.8 GB" in info.value.message and "12.0 GB available" in info.value.message
    assert "--skip-memory-check" in info.value.message
    # The 0.5B fits in 12 GB with int4, not with int8.
    small = _checkpoint(tmp_path / "qwen05", QWEN_0_5B)
    with pytest.raises(ModelError) as info:
        prep.import_llm(str(small), "qwen05", cache, quantize="int8")
    assert info.value.code == "OUT_OF_MEMORY" and "12.3 GB" in info.value.message
    with pytest.raises(ModelError) as info:
        prep.import_llm(str(small), "qwen05", cache, quantize="int4")
    assert info.value.code == "MODEL_EXPORT_FAILED" and len(_NoExport.started) == 1  # the export was started


def test_skip_memory_check_lets_someone_who_knows_better_export(tmp_path, monkeypatch):
    cache = _no_export_cache(tmp_path, monkeypatch, 1)
    ckpt = _checkpoint(tmp_path / "qwen15", QWEN_1_5B)
    with pytest.raises(ModelError) as info:
        prep.import_llm(str(ckpt), "qwen15", cache, check_memory=False)
    assert info.value.code == "MODEL_EXPORT_FAILED" and len(_NoExport.started) == 1


def test_a_manifest_model_is_refused_after_assembly_before_the_export(tmp_path, monkeypatch):
    from companion.models.manifest import parse_manifest
    from tests.test_prepare import _manifest

    _NoExport.started = []
    monkeypatch.setattr(prep.subprocess, "Popen", _NoExport)
    monkeypatch.setattr(prep, "memory_available_bytes", lambda: 4 * 10**9)
    # The assembled artifact in the staging folder: 2 G parameters.
    _gguf(tmp_path / "x.gguf", {"token_embd.weight": (1536, 151936), "output.weight": (1536, 151936),
                                "blk.weights": (1536, 1_000_000)})
    manifest = parse_manifest(_manifest("m", "p", "a" * 64, ["p/x"], b"x").replace('role = "vad"', 'role = "llm"')
                              .replace('file = "model.bin"', 'file = "x.gguf"') + '\n[convert]\nrecipe = "llm-onnx"\n')
    with pytest.raises(ModelError) as info:
        prep._export_llm(manifest, tmp_path)
    assert info.value.code == "OUT_OF_MEMORY" and _NoExport.started == []


def test_the_cli_has_the_override_flag():
    from companion.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["models", "import-llm", "x", "--name", "y", "--skip-memory-check"]).skip_memory_check
    assert parser.parse_args(["models", "prepare", "--skip-memory-check"]).skip_memory_check
    assert not parser.parse_args(["models", "prepare"]).skip_memory_check
