"""Streaming Silero VAD v6, the ONNX file faster-whisper ships (prepared as ``silero-vad-v6``).

The model looks at 512-sample windows (32 ms at 16 kHz) plus the 64 samples
before each window, and carries an LSTM state between windows. Input of any
chunk size is re-framed into those windows, so the probabilities do not depend
on how the audio arrives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from companion.errors import MODEL_LOAD_FAILED, ModelError

WINDOW = 512
CONTEXT = 64


class SileroVAD:
    """Speech probability per 32 ms window; one instance per audio stream (it has state)."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        try:
            self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"cannot load VAD model {model_path}: {err}", code=MODEL_LOAD_FAILED) from err
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[float]:
        """Feed 16 kHz samples; returns the probability of every window completed by them."""
        buf = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n = buf.size // WINDOW
        self._pending = buf[n * WINDOW:].copy()
        probs = []
        for i in range(n):
            window = buf[i * WINDOW:(i + 1) * WINDOW]
            x = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
            self._context = window[-CONTEXT:].copy()
            probs.append(float(np.asarray(out).reshape(-1)[0]))
        return probs
