"""Prepare-time export of a sentence-transformers checkpoint to ONNX (optimum) and int8 (onnxruntime).

Run as ``python -m companion.encoder.export SOURCE.zip|FOLDER OUT`` in a child process of
``companion models prepare``: it imports torch, transformers and optimum, which the robot
never loads. The output folder holds ``model.onnx`` (int8 weights), ``tokenizer.json``,
the checkpoint's ``config.json`` and ``encoder.json`` (pooling, max length, dimension).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from companion.llm.export import run_step

#: Longest input in tokens (all-MiniLM-L6-v2 was trained with 128; a child's sentence is far shorter).
MAX_TOKENS = 128


def _log(msg: str) -> None:
    print(f"[export] {msg}", file=sys.stderr, flush=True)


def _unpacked(source: Path, work: Path) -> Path:
    if source.is_dir():
        return source
    if not zipfile.is_zipfile(source):
        raise ValueError(f"{source} is neither a checkpoint folder nor a zip of one")
    with zipfile.ZipFile(source) as zf:
        for name in zf.namelist():  # no path escapes the work folder
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"{source}: unsafe path {name!r} in the archive")
        zf.extractall(work)
    configs = list(work.rglob("config.json"))
    top = min(configs, key=lambda p: len(p.parts)) if configs else None
    if top is None:
        raise ValueError(f"{source}: no config.json inside")
    return top.parent


def pooling_of(checkpoint: Path) -> str:
    """The sentence-transformers pooling mode ("mean" for all-MiniLM-L6-v2)."""
    cfg = checkpoint / "1_Pooling" / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        for mode in ("mean", "cls", "max"):
            if data.get(f"pooling_mode_{mode}_tokens"):
                return mode
    return "mean"


def export_encoder(source: Path, out: Path) -> dict:
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="encoder-export-") as tmp:
        work = Path(tmp)
        checkpoint = _unpacked(source, work / "src")
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from optimum.exporters.onnx import main_export

        _log("exporting to ONNX with optimum (feature-extraction)")
        main_export(str(checkpoint), output=str(work / "fp32"), task="feature-extraction", device="cpu",
                    library_name="transformers", do_validation=False)
        _log("quantising to int8 (dynamic, per-channel)")
        quantize_dynamic(str(work / "fp32" / "model.onnx"), str(out / "model.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True)
        for name in ("tokenizer.json", "config.json"):
            shutil.copy2(checkpoint / name, out / name)
        hidden = json.loads((checkpoint / "config.json").read_text()).get("hidden_size")
        info = {"pooling": pooling_of(checkpoint), "normalize": True, "max_tokens": MAX_TOKENS, "dim": hidden,
                "quantize": "int8", "export_s": round(time.monotonic() - started, 1)}
        (out / "encoder.json").write_text(json.dumps(info, indent=1))
        _log(f"done in {info['export_s']} s")
        return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.encoder.export", description=__doc__)
    parser.add_argument("source", type=Path, help="a sentence-transformers checkpoint folder or a zip of one")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    return run_step(lambda: export_encoder(args.source, args.out), "export")


if __name__ == "__main__":
    raise SystemExit(main())
