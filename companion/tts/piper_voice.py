"""piper-tts with the prepared voice, off the event loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.errors import MODEL_LOAD_FAILED, ModelError


@dataclass(frozen=True)
class Speech:
    samples: np.ndarray
    rate: int
    synth_ms: float


def _quiet_session(model: Path, providers: list[str]):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(model), so, providers=providers)


def _language(model: Path) -> str | None:
    import json

    try:
        code = json.loads(model.with_name(model.name + ".json").read_text(encoding="utf-8"))["language"]["code"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


class PiperTTS:
    def __init__(self, voice_dir: Path, *, use_cuda: bool = False) -> None:
        from piper import PiperVoice

        try:
            model = next(voice_dir.glob("*.onnx"))
            self._voice = PiperVoice.load(model, use_cuda=use_cuda)
            # piper's own session lets its threads spin after each sentence, which slows the language
            # model writing the next clause on a 2-core board; the same model, with threads that sleep.
            self._voice.session = _quiet_session(model, self._voice.session.get_providers())
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"cannot load piper voice from {voice_dir}: {err}", code=MODEL_LOAD_FAILED) from err
        self.rate: int = int(self._voice.config.sample_rate)
        #: The voice's language as its config names it ("en_US"), or None.
        self.language: str | None = _language(model)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts")

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def synthesize_sync(self, text: str) -> Speech:
        started = time.perf_counter()
        chunks = [c.audio_float_array for c in self._voice.synthesize(text)]
        samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        return Speech(samples, self.rate, round((time.perf_counter() - started) * 1000, 1))

    async def synthesize(self, text: str) -> Speech:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.synthesize_sync, text)

    def warm(self) -> None:
        self.synthesize_sync("Hi.")
