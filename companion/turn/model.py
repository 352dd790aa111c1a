"""Smart Turn v3: the probability that the child has finished speaking, from the sound of it.

An 8 M-parameter Whisper-tiny encoder with a classifier, int8 ONNX (from the pipecat-ai wheel,
prepared as ``smart-turn-v3.2``). It hears intonation, a trailing "and...", a breath in
mid-phrase: what silence alone cannot tell. One call is ~50-100 ms on two x86 cores (features
included). It runs on its own worker thread, never on the event loop, at a lower CPU priority
(``[turn] nice``): it is called at the very moment the speculative ASR starts, and its answer is
needed only when the reply is ready to play, so it takes the cycles the ASR and the language model
leave free instead of slowing them (measured: the ASR stage went 205 -> 269 ms at equal priority).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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

    def __init__(self, model_dir: Path, *, threads: int = 1, nice: int = 0,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)):
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
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn",
                                           initializer=lower_priority, initargs=(nice,))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def guess(self, audio: np.ndarray) -> TurnGuess:
        """``predict`` on the model's own (lower-priority) worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.predict, audio)

    def predict(self, audio: np.ndarray) -> TurnGuess:
        """``audio``: the utterance so far at 16 kHz, ending where the pause began (plus any silence since)."""
        started = time.perf_counter()
        features = turn_features(audio)[None]
        out = self._session.run(None, {self._input: features})[0]
        probability = float(np.asarray(out).reshape(-1)[0])
        return TurnGuess(probability, round((time.perf_counter() - started) * 1000, 1))

    def warm(self) -> None:
        self.predict(np.zeros(16_000, dtype=np.float32))


def lower_priority(nice: int) -> None:
    """Raise this worker thread's niceness by ``nice`` (Linux: a thread is a task with its own); elsewhere
    nothing."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as err:
        log.debug("cannot lower the end-of-turn thread's priority: %s", err)


def load_turn_model(model_dir: Path | None, *, threads: int = 1, nice: int = 0) -> SmartTurn | None:
    """The model, or None with a logged warning (the loop then ends turns by the silence rule)."""
    if model_dir is None:
        log.warning("[TURN_MODEL_MISSING] the end-of-turn model is not prepared; turns end by the silence rule "
                    "(run `companion models prepare smart-turn-v3.2`)")
        return None
    try:
        model = SmartTurn(model_dir, threads=threads, nice=nice)
        model.warm()
    except ModelError as err:
        log.warning("[TURN_MODEL_MISSING] %s; turns end by the silence rule", err.message)
        return None
    return model
