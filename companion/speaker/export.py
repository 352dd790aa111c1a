"""Prepare-time conversion of Resemblyzer's GE2E speaker encoder (a torch file) to ONNX.

Run as ``python -m companion.speaker.export pretrained.pt OUT_FOLDER`` in a child process of
``companion models prepare`` (it imports torch, from the ``export`` extra; the robot runs
onnxruntime only). The network is Resemblyzer 0.1.4's ``VoiceEncoder``: a 3-layer LSTM
(40 -> 256) whose last hidden state goes through a linear layer, a ReLU and an L2 norm.
Input ``mels`` (batch, frames, 40): power mel frames (speaker/features.py ``GE2E``); output
``embedding`` (batch, 256), unit length.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

HIDDEN = 256
LAYERS = 3
N_MELS = 40


def _log(msg: str) -> None:
    print(f"[export] {msg}", file=sys.stderr, flush=True)


def export_ge2e(source: Path, out: Path) -> dict:
    import torch
    from torch import nn

    class VoiceEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
            self.linear = nn.Linear(HIDDEN, HIDDEN)
            self.relu = nn.ReLU()

        def forward(self, mels):
            _, (hidden, _) = self.lstm(mels)
            embeds = self.relu(self.linear(hidden[-1]))
            return embeds / torch.linalg.vector_norm(embeds, dim=1, keepdim=True).clamp_min(1e-8)

    started = time.monotonic()
    state = torch.load(str(source), map_location="cpu", weights_only=True)["model_state"]
    model = VoiceEncoder()
    missing, _unused = model.load_state_dict(state, strict=False)  # the checkpoint also has GE2E's loss scale
    if missing:
        raise ValueError(f"{source}: the checkpoint lacks {missing}")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    _log("exporting the GE2E LSTM to ONNX")
    example = torch.zeros(2, 160, N_MELS)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and batch-size notes
        torch.onnx.export(model, (example,), str(out / "speaker.onnx"), input_names=["mels"],
                          output_names=["embedding"], dynamic_axes={"mels": {0: "batch", 1: "frames"},
                                                                    "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)
        probe = torch.rand(3, 120, N_MELS)  # another batch and length than the example: both axes are dynamic
        reference = model(probe).numpy()
    import onnxruntime as ort

    got = ort.InferenceSession(str(out / "speaker.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"mels": probe.numpy()})[0]
    error = float(abs(got - reference).max())
    if error > 1e-4:
        raise ValueError(f"the ONNX encoder differs from the torch one by {error:.2g}")
    info = {"kind": "ge2e", "dim": HIDDEN, "max_abs_error": error, "export_s": round(time.monotonic() - started, 1)}
    (out / "speaker.json").write_text(json.dumps(info, indent=1))
    _log(f"done in {info['export_s']} s (largest difference from torch {error:.1e})")
    return info


def main(argv: list[str] | None = None) -> int:
    from companion.llm.export import EXIT_DEPS_MISSING

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError as err:
        print(f"converting the speaker encoder needs torch (pip install -e '.[export]'): {err}", file=sys.stderr)
        return EXIT_DEPS_MISSING
    export_ge2e(args.source, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
