"""Sentence vectors on the robot: tokenizers + onnxruntime, no torch.

Mean pooling over the attention mask and L2 normalisation, as sentence-transformers does
for all-MiniLM-L6-v2, so a dot product of two vectors is their cosine similarity.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.errors import MODEL_LOAD_FAILED, ModelError

log = logging.getLogger(__name__)


class SentenceEncoder:
    """``encode(texts) -> (n, dim) float32``, unit-length rows. Blocking: call it off the event loop."""

    def __init__(self, model_dir: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            info = json.loads((model_dir / "encoder.json").read_text())
            self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(model_dir / "model.onnx"), options,
                                                providers=["CPUExecutionProvider"])
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"sentence encoder in {model_dir} does not load: {err}", code=MODEL_LOAD_FAILED) from err
        except Exception as err:  # noqa: BLE001 - onnxruntime's own load errors
            raise ModelError(f"sentence encoder in {model_dir} does not load: {err}", code=MODEL_LOAD_FAILED) from err
        self.max_tokens = int(info.get("max_tokens", 128))
        self.dim = int(info.get("dim") or 384)
        self.pooling = info.get("pooling", "mean")
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str], *, batch: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch):
            chunk = [t if t.strip() else "." for t in texts[start:start + batch]]
            encodings = self.tokenizer.encode_batch(chunk)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]  # (b, t, dim)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                m = mask[..., None].astype(np.float32)
                pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[start:start + len(chunk)] = pooled / np.maximum(norms, 1e-12)
        return out

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


@dataclass(frozen=True)
class LoadedEncoder:
    """The one encoder of the process (fact cards, safety classifier) and an id of its weights (caches of
    vectors and heads made with it are keyed by it)."""

    encoder: SentenceEncoder
    id: str


def load_encoder(name: str, cache) -> LoadedEncoder | None:
    """The prepared encoder ``name`` from the model cache; None (logged) when it is not prepared."""
    try:
        prepared = cache.get(name)
    except ModelError as err:
        log.warning("[ENCODER_UNAVAILABLE] %s", err.message)
        return None
    encoder_id = str(prepared.record.get("manifest_digest") or prepared.record.get("files", {})
                     .get("encoder/model.onnx", {}).get("sha256", "unknown"))
    return LoadedEncoder(SentenceEncoder(prepared.path / "encoder"), encoder_id)
