"""GGUF / Hugging Face checkpoint -> ONNX (optimum, with past key values) -> int4/int8.

This is the only module that imports torch, transformers and optimum (the
``export`` extra). ``companion models prepare`` runs it in a child process
(``python -m companion.llm.export``) so that a crash or the kernel's OOM killer
during export is reported with a code instead of taking the caller down, and so
the memory the export needs (11-16 GB for the 1.5B with int4, about twice that with int8;
README, and ``companion/models/export_memory.py``, which checks it before starting) is
returned to the system when it ends.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from companion.llm.graph import keep_last_logits

#: Files the runtime needs next to model.onnx (tokenizer, chat template, stop tokens).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "config.json",
)

#: Weights per int4 block (MatMulNBits), the one default for every export: a manifest's recipe
#: (``[convert] block_size``) and ``companion models import-llm`` both take it from here.
#: `companion bench llm` on 2 cores, Qwen2.5 0.5B: block 64 decoded 47.0 tok/s (llama.cpp 46.0,
#: ratio 1.02), block 32 43.8 tok/s (llama.cpp 46.1, ratio 0.95).
INT4_BLOCK_SIZE = 64

#: Version of the llm-onnx recipe: a prepared model made by an older one is stale (the manifest digest
#: includes it). 2: the graph takes ``logits_to_keep`` (llm/graph.py).
LLM_EXPORT_VERSION = 2

#: Exit codes of the export child process, mapped to error codes by the caller.
EXIT_DEPS_MISSING = 3
EXIT_OUT_OF_MEMORY = 4
EXIT_DISK_FULL = 5
EXIT_BAD_SOURCE = 6


def _log(msg: str) -> None:
    print(f"[export] {msg}", file=sys.stderr, flush=True)


def load_checkpoint(source: str, work_dir: Path, *, allow_hub: bool = False) -> Path:
    """Make ``source`` a Hugging Face checkpoint folder optimum can export.

    ``source`` is a ``.gguf`` file (dequantised by transformers), a checkpoint
    folder (used as is), or, only with ``allow_hub``, a hub id.
    """
    src = Path(source)
    if src.is_dir():
        if not (src / "config.json").is_file():
            raise ValueError(f"{src} is a folder but holds no config.json: not a Hugging Face checkpoint")
        return src
    if src.is_file() and src.suffix == ".gguf":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _log(f"loading GGUF {src.name} with transformers (dequantising to float32)")
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, torch_dtype=torch.float32)
        out = work_dir / "checkpoint"
        model.save_pretrained(out)
        tok.save_pretrained(out)
        del model
        return out
    if allow_hub and not src.exists():
        return Path(source)  # optimum resolves hub ids itself (online robots only)
    raise ValueError(f"{source} is neither a .gguf file nor a checkpoint folder (hub ids need --allow-hub)")


def export_onnx(checkpoint: Path, out_dir: Path) -> Path:
    from optimum.exporters.onnx import main_export

    _log("exporting to ONNX with optimum (text-generation-with-past)")
    main_export(
        str(checkpoint),
        output=str(out_dir),
        task="text-generation-with-past",
        device="cpu",
        do_validation=False,
    )
    return out_dir / "model.onnx"


def quantize(model_path: Path, out_path: Path, mode: str, *, block_size: int = INT4_BLOCK_SIZE) -> None:
    """Weight-only int4 (MatMulNBits + GatherBlockQuantized) or dynamic int8."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    data_name = out_path.name + ".data"
    if mode == "int4":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        _log(f"quantising to int4 (block {block_size}, MatMul and embedding Gather)")
        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(model_path)),
            bits=4,
            block_size=block_size,
            is_symmetric=True,
            # accuracy_level 4: int8 activations in MatMulNBits, the fast path on ARM and x86.
            accuracy_level=4,
            op_types_to_quantize=("MatMul", "Gather"),
            quant_axes=(("MatMul", 0), ("Gather", 1)),
        )
        quantizer.process()
        model = quantizer.model.model
        onnx.save_model(model, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    elif mode == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        _log("quantising to int8 (dynamic, per-channel)")
        quantize_dynamic(str(model_path), str(out_path), weight_type=QuantType.QInt8, per_channel=True,
                         use_external_data_format=True)
    elif mode == "none":
        import onnx

        model = onnx.load(str(model_path))
        onnx.save_model(model, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    else:
        raise ValueError(f"unknown quantisation '{mode}'")


def export_llm(source: str, out_dir: Path, *, quantize_mode: str = "int4", block_size: int = INT4_BLOCK_SIZE,
               work_dir: Path | None = None, allow_hub: bool = False) -> dict:
    """The whole recipe; leaves ``model.onnx`` (+ data) and tokenizer files in ``out_dir``."""
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    own_work = work_dir is None
    work = work_dir or out_dir.parent / f".work-{out_dir.name}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        checkpoint = load_checkpoint(source, work, allow_hub=allow_hub)
        raw = export_onnx(checkpoint, work / "onnx")
        keep_last_logits(raw)
        quantize(raw, out_dir / "model.onnx", quantize_mode, block_size=block_size)
        for name in TOKENIZER_FILES:
            for folder in (work / "onnx", checkpoint):
                if (folder / name).is_file():
                    shutil.copy2(folder / name, out_dir / name)
                    break
        if not (out_dir / "tokenizer.json").is_file():
            raise ValueError("the checkpoint has no fast tokenizer (tokenizer.json); cannot run without transformers")
        info = {"source": Path(source).name, "exporter": LLM_EXPORT_VERSION, "quantize": quantize_mode, "block_size": block_size, "export_s": round(time.monotonic() - started, 1)}
        (out_dir / "export.json").write_text(json.dumps(info, indent=2))
        _log(f"done in {info['export_s']} s")
        return info
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.llm.export", description=__doc__)
    parser.add_argument("source", help=".gguf file, checkpoint folder, or hub id (with --allow-hub)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--quantize", choices=("int4", "int8", "none"), default="int4")
    parser.add_argument("--block-size", type=int, default=INT4_BLOCK_SIZE, help="int4 block size")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (several GB)")
    parser.add_argument("--allow-hub", action="store_true")
    args = parser.parse_args(argv)
    if not args.allow_hub:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run_step(lambda: export_llm(args.source, args.out, quantize_mode=args.quantize,
                                       block_size=args.block_size, work_dir=args.work, allow_hub=args.allow_hub),
                    "export")


def run_step(work: Callable[[], object], what: str) -> int:
    """The body of a prepare-time child process (an export, the safety classifier's training): its
    failures as the exit codes the parent turns into coded errors."""
    try:
        work()
    except ImportError as err:
        print(f"{what} dependencies missing ({err}); install with: pip install 'companion[export]'", file=sys.stderr)
        return EXIT_DEPS_MISSING
    except RuntimeError as err:
        if "alloc" in str(err).lower() and "memory" in str(err).lower():  # torch's allocator failure
            print(f"out of memory during {what}: {err}", file=sys.stderr)
            return EXIT_OUT_OF_MEMORY
        raise
    except MemoryError:
        print(f"out of memory during {what}", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"disk full during {what}: {err}", file=sys.stderr)
            return EXIT_DISK_FULL
        raise
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return EXIT_BAD_SOURCE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
