"""Smart Turn v3: the probability that the child has finished speaking, from the sound of it.

An 8 M-parameter Whisper-tiny encoder with a classifier, int8 ONNX (from the pipecat-ai wheel,
prepared as ``smart-turn-v3.2``). It hears intonation, a trailing "and...", a breath in
mid-phrase: what silence alone cannot tell. One call is ~50-80 ms on two x86 cores (features
included); the loop runs it on a worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.errors import MODEL_LOAD_FAILED, MODEL_NOT_PREPARED, ModelError
from companion.turn.features import turn_features

log = logging.getLogger(__name__)

FILE = "smart-turn-v3.2-cpu.onnx"


@dataclass(frozen=True)
class TurnGuess:
    """The model's view of one pause."""

    #: Probability that the turn is complete.
    probability: float
    #: Time the call took (features + model), ms.
    model_ms: float


class SmartTurn:
    """The end-of-turn model on onnxruntime (thread-safe: onnxruntime sessions may be run concurrently)."""

    def __init__(self, model_dir: Path, *, threads: int = 1, providers: tuple[str, ...] = ("CPUExecutionProvider",)):
        import onnxruntime as ort

        path = Path(model_dir) / FILE
        if not path.is_file():
            raise ModelError(f"end-of-turn model file {path} is missing; run `companion models prepare "
                             f"smart-turn-v3.2`", code=MODEL_NOT_PREPARED)
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=list(providers))
        except Exception as err:  # noqa: BLE001 - any load failure is a coded model error
            raise ModelError(f"cannot load end-of-turn model {path}: {err}", code=MODEL_LOAD_FAILED) from err
        self._input = self._session.get_inputs()[0].name

    def predict(self, audio: np.ndarray) -> TurnGuess:
        """``audio``: the utterance so far at 16 kHz, ending where the pause began (plus any silence since)."""
        started = time.perf_counter()
        features = turn_features(audio)[None]
        out = self._session.run(None, {self._input: features})[0]
        probability = float(np.asarray(out).reshape(-1)[0])
        return TurnGuess(probability, round((time.perf_counter() - started) * 1000, 1))

    def warm(self) -> None:
        self.predict(np.zeros(16_000, dtype=np.float32))


def load_turn_model(model_dir: Path | None, *, threads: int = 1) -> SmartTurn | None:
    """The model, or None with a logged warning (the loop then ends turns by the silence rule)."""
    if model_dir is None:
        log.warning("[TURN_MODEL_MISSING] the end-of-turn model is not prepared; turns end by the silence rule "
                    "(run `companion models prepare smart-turn-v3.2`)")
        return None
    try:
        model = SmartTurn(model_dir, threads=threads)
        model.warm()
    except ModelError as err:
        log.warning("[TURN_MODEL_MISSING] %s; turns end by the silence rule", err.message)
        return None
    return model
