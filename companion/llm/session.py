"""An exported causal LM as an onnxruntime session: one forward step with a KV cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.errors import MODEL_LOAD_FAILED, ModelError
from companion.llm.graph import LOGITS_TO_KEEP

log = logging.getLogger(__name__)

#: Per layer: (key, value), each shaped (batch=1, kv_heads, seq, head_dim).
KVCache = tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class RuntimeOptions:
    """How the model runs on this hardware. These defaults are the product's: ``LLMConfig`` (``[llm]``
    in companion.toml) takes its own from here."""

    #: Threads for one forward pass (onnxruntime intra-op threads).
    threads: int = 2
    #: Execution providers in order of preference; CPU is always appended as the fallback.
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    #: Let onnxruntime's idle threads spin between passes. Off: after a pass the cores go straight to
    #: the TTS and ASR. `companion bench` on 2 cores, spin on vs off: TTS first chunk 138 vs 98 ms,
    #: ttfa p50 747 vs 639 ms; but alone (`companion bench llm [--spin]`) 51 vs 38-42 tokens/s.
    spin: bool = False


def choose_providers(wanted: tuple[str, ...], available: list[str]) -> list[str]:
    chosen = [p for p in wanted if p in available]
    for p in wanted:
        if p not in available:
            log.warning("[LLM_PROVIDER_UNAVAILABLE] execution provider %s is not in this onnxruntime build "
                        "(available: %s); falling back", p, ", ".join(available))
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


#: Longest piece of a prompt fed in one forward pass (bounds the logits tensor; see ``forward``).
PREFILL_CHUNK = 64


class OnnxCausalLM:
    """Runs ``model.onnx`` exported with past key values (optimum's text-generation-with-past)."""

    def __init__(self, model_path: Path, options: RuntimeOptions = RuntimeOptions()) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if not options.spin:
            # Threads sleep between forward passes instead of spinning: the ASR and TTS share the cores.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = choose_providers(options.providers, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(model_path), so, providers=providers)
        except Exception as err:  # noqa: BLE001
            if providers != ["CPUExecutionProvider"]:
                log.warning("[LLM_PROVIDER_FAILED] %s failed to start (%s); using CPUExecutionProvider", providers[0], err)
                self._session = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
            else:
                raise ModelError(f"cannot load {model_path}: {err}", code=MODEL_LOAD_FAILED) from err
        self.providers: list[str] = self._session.get_providers()
        inputs = {i.name: i for i in self._session.get_inputs()}
        self._has_position_ids = "position_ids" in inputs
        # Exported by an older recipe, the graph computes logits for every position (llm/graph.py).
        self._logits_to_keep = LOGITS_TO_KEEP in inputs
        layers = sorted(int(n.split(".")[1]) for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
        if not layers or "input_ids" not in inputs:
            raise ModelError(f"{model_path} is not a causal LM exported with past key values", code=MODEL_LOAD_FAILED)
        self.num_layers = len(layers)
        shape = inputs["past_key_values.0.key"].shape
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self._kv_dtype = np.float16 if "float16" in inputs["past_key_values.0.key"].type else np.float32
        self._past_names = [(f"past_key_values.{i}.key", f"past_key_values.{i}.value") for i in range(self.num_layers)]
        self._output_names = ["logits"] + [n for i in range(self.num_layers) for n in (f"present.{i}.key", f"present.{i}.value")]

    def empty_cache(self) -> KVCache:
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self._kv_dtype)
        return tuple((empty, empty) for _ in range(self.num_layers))

    def forward(self, token_ids: list[int], past: KVCache, *, last: int | None = None) -> tuple[np.ndarray, KVCache]:
        """Feed ``token_ids`` after ``past``; returns the last position's logits (one vector), or with
        ``last`` the last that many positions' (one row each), and the new cache.

        Long inputs go through in chunks of ``PREFILL_CHUNK`` tokens: a graph from an older export
        computes logits for every position (151,936 floats, 0.6 MB a token for Qwen), so a 500-token
        prefill in one pass would take ~300 MB, which onnxruntime's arena then keeps for the life of the
        process. A current export computes only the positions asked for (``logits_to_keep``). The rows
        asked for come from one pass, with what comes before them chunked.
        """
        if last is not None and not 0 < last <= len(token_ids):
            raise ValueError(f"last={last} rows of {len(token_ids)} tokens")
        tail = max(last or 1, min(len(token_ids), PREFILL_CHUNK))
        for i in range(0, len(token_ids) - tail, PREFILL_CHUNK):
            _, past = self._forward(token_ids[i:min(i + PREFILL_CHUNK, len(token_ids) - tail)], past)
        return self._forward(token_ids[len(token_ids) - tail:], past, keep=last)

    def _forward(self, token_ids: list[int], past: KVCache, *, keep: int | None = None) -> tuple[np.ndarray, KVCache]:
        """One pass; the logits of the last ``keep`` positions (None: the last position's, one vector)."""
        past_len = past[0][0].shape[2]
        n = len(token_ids)
        feeds: dict[str, np.ndarray] = {
            "input_ids": np.asarray([token_ids], dtype=np.int64),
            "attention_mask": np.ones((1, past_len + n), dtype=np.int64),
        }
        if self._logits_to_keep:
            feeds[LOGITS_TO_KEEP] = np.asarray(keep or 1, dtype=np.int64)
        if self._has_position_ids:
            feeds["position_ids"] = np.arange(past_len, past_len + n, dtype=np.int64)[None, :]
        for (kname, vname), (k, v) in zip(self._past_names, past):
            feeds[kname] = k
            feeds[vname] = v
        outputs = self._session.run(self._output_names, feeds)
        logits = outputs[0][0, -1] if keep is None else outputs[0][0, -keep:]
        present = tuple((outputs[1 + 2 * i], outputs[2 + 2 * i]) for i in range(self.num_layers))
        return logits, present


def cache_length(cache: KVCache) -> int:
    return int(cache[0][0].shape[2])


def truncate_cache(cache: KVCache, length: int) -> KVCache:
    return tuple((k[:, :, :length], v[:, :, :length]) for k, v in cache)
