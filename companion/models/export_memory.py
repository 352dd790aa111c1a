"""How much memory exporting a language model takes, known before the export starts.

The export (``companion.llm.export``: GGUF -> float32 transformers -> ONNX -> quantised) holds
several float32 copies of the weights at its peak, and the int8 quantiser roughly doubles that.
A machine without that much memory is found out minutes in, by the kernel's OOM killer; this
module refuses before, from the checkpoint's parameter count and the quantisation.

Measured peaks (max RSS of the export process; float32 weights = 4 bytes x parameters; the GGUF
files carry an untied output matrix, so the 1.5B exports 1.78 G parameters, the 0.5B 0.63 G):

=================================  =====  ========  ===========================
model                              quant  fp32 GB   peak RSS
=================================  =====  ========  ===========================
qwen2.5-coder-0.5b-instruct        none   2.5       6.3 GB
qwen2.5-coder-0.5b-instruct        int4   2.5       ~6 GB
qwen2.5-coder-0.5b-instruct        int8   2.5       11.1 GB
qwen2.5-coder-1.5b-instruct        int4   7.1       11.4 GB (290 s); 15.9 GB in an earlier run
qwen2.5-coder-1.5b-instruct        int8   7.1       > 20.6 GB (stopped there)
=================================  =====  ========  ===========================

A line through them (peak = 1.0 GB + 2.1 x fp32 weights for none/int4, 4.0 x for int8) is made
conservative below: every measured peak is under its estimate, by 10-25%.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

from companion.errors import OUT_OF_MEMORY, ModelError

#: Python, torch, optimum and onnx loaded, before any weight (measured fit ~1.0 GB, rounded up).
EXPORT_BASE_BYTES = 1_500_000_000
#: Float32 copies of the weights alive at the export's peak, per quantisation mode.
FP32_COPIES = {"none": 2.3, "int4": 2.3, "int8": 4.3}
#: Bytes per parameter assumed when a GGUF's header cannot be read: 4-bit quantisation, the smallest
#: in common use for chat models (Q4_K_M is ~0.63), so the count comes out too high, never too low.
GGUF_BYTES_PER_PARAM = 0.5

_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
#: Bounds on a header's counts: a damaged file gives absurd ones, and the size-based count is used.
_GGUF_MAX_ITEMS = 10_000_000


def params_from_config(config: dict) -> int:
    """Weights of a decoder-only transformer from its ``config.json``: embeddings, the output matrix
    unless tied, attention (grouped-query when ``num_key_value_heads`` says so) and the gated MLP."""
    try:
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        inter = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"config.json lacks a size the estimate needs: {err}") from err
    heads = int(config.get("num_attention_heads") or 1)
    kv_heads = int(config.get("num_key_value_heads") or heads)  # absent: full multi-head attention
    head_dim = int(config.get("head_dim") or hidden // heads)
    kv_dim = kv_heads * head_dim
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_dim + 2 * kv_dim + heads * head_dim
    mlp = 3 * hidden * inter
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * (attention + mlp + 2 * hidden) + hidden


def _read(fh: BinaryIO, fmt: str) -> int:
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("GGUF header ends early")
    return struct.unpack(fmt, data)[0]


def _skip_value(fh: BinaryIO, kind: int) -> None:
    if kind in _GGUF_SCALAR:
        fh.seek(_GGUF_SCALAR[kind], 1)
    elif kind == _GGUF_STRING:
        fh.seek(_read(fh, "<Q"), 1)
    elif kind == _GGUF_ARRAY:
        inner, count = _read(fh, "<I"), _read(fh, "<Q")
        if count > _GGUF_MAX_ITEMS:
            raise ValueError("GGUF array too long")
        if inner in _GGUF_SCALAR:
            fh.seek(_GGUF_SCALAR[inner] * count, 1)
        else:
            for _ in range(count):
                _skip_value(fh, inner)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def params_from_gguf(path: Path) -> int:
    """Parameters of a GGUF file: the element counts of its tensors, read from the header (v2, v3);
    where the header cannot be read, from the file's size at ``GGUF_BYTES_PER_PARAM``."""
    try:
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF" or _read(fh, "<I") not in (2, 3):
                raise ValueError("not a GGUF v2/v3 file")
            tensors, kvs = _read(fh, "<Q"), _read(fh, "<Q")
            if tensors > _GGUF_MAX_ITEMS or kvs > _GGUF_MAX_ITEMS:
                raise ValueError("GGUF counts out of range")
            for _ in range(kvs):
                fh.seek(_read(fh, "<Q"), 1)  # the key
                _skip_value(fh, _read(fh, "<I"))
            total = 0
            for _ in range(tensors):
                fh.seek(_read(fh, "<Q"), 1)  # the name
                dims = _read(fh, "<I")
                if dims > 8:
                    raise ValueError("GGUF tensor with too many dimensions")
                count = 1
                for _ in range(dims):
                    count *= _read(fh, "<Q")
                fh.seek(4 + 8, 1)  # type, offset
                total += count
            return total
    except (OSError, ValueError, struct.error):
        return int(path.stat().st_size / GGUF_BYTES_PER_PARAM)


def parameter_count(source: str) -> int | None:
    """Parameters of an export source: a checkpoint folder (its config.json) or a .gguf file.
    None where it cannot be known before the export (a hub id)."""
    path = Path(source)
    if path.is_dir() and (path / "config.json").is_file():
        return params_from_config(json.loads((path / "config.json").read_text(encoding="utf-8")))
    if path.is_file() and path.suffix == ".gguf":
        return params_from_gguf(path)
    return None


def export_peak_bytes(params: int, quantize: str) -> int:
    """The estimated peak memory of exporting a model of ``params`` parameters with ``quantize``."""
    if quantize not in FP32_COPIES:
        raise ValueError(f"unknown quantisation '{quantize}'")
    return int(EXPORT_BASE_BYTES + FP32_COPIES[quantize] * 4 * params)


def check_export_memory(source: str, quantize: str, *, label: str, available: int | None) -> int | None:
    """The estimated peak in bytes (None: unknown source), or OUT_OF_MEMORY when ``available`` (bytes
    this machine can give, None: unknown) is less."""
    params = parameter_count(source)
    if params is None:
        return None
    peak = export_peak_bytes(params, quantize)
    if available is not None and available < peak:
        smaller = " (int4 needs about half as much)" if quantize == "int8" else ""
        raise ModelError(
            f"exporting {label} ({params / 1e9:.2f} G parameters, {quantize}) needs about {peak / 1e9:.1f} GB of "
            f"memory at its peak; this machine has {available / 1e9:.1f} GB available{smaller}. Export it on a "
            f"bigger machine and copy the model cache, or pass --skip-memory-check if you know better",
            code=OUT_OF_MEMORY,
        )
    return peak
