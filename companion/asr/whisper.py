"""faster-whisper from numpy arrays (never a temp file), off the event loop.

Whisper invents text for silence and noise ("Thank you.", "you"). A transcript
is dropped when Whisper itself says it is probably not speech (no-speech
probability high and log-probability low), when it is one of the phrases Whisper
is known to invent and the audio had little speech in it, or when it is empty.
"""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.errors import MODEL_LOAD_FAILED, ModelError

#: Phrases Whisper produces from non-speech (its training data's subtitles).
HALLUCINATIONS = frozenset({
    "thank you", "thank you very much", "thanks for watching", "thank you for watching", "you", "bye",
    "subtitles by the amara org community", "please subscribe", "so", "okay", "uh", "um", "hmm",
})


@dataclass(frozen=True)
class ASRConfig:
    #: Name of the prepared ASR model (whisper-base: accurate; whisper-tiny-en: fast).
    model: str = "whisper-base"
    #: Spoken language, fixed (no detection: it costs time and guesses wrong on short child speech).
    language: str = "en"
    #: CTranslate2 compute type (int8 on CPUs; float16 on a Jetson's GPU).
    compute_type: str = "int8"
    device: str = "cpu"
    threads: int = 2
    beam_size: int = 1
    #: Drop a transcript whose no-speech probability is above this while avg_logprob is below the next.
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0


@dataclass(frozen=True)
class Transcript:
    text: str
    #: Highest no-speech probability over the segments.
    no_speech_prob: float
    avg_logprob: float
    asr_ms: float
    #: Why the transcript is not a child's words (None: keep it).
    rejected: str | None = None


def _norm(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


class WhisperASR:
    def __init__(self, model_dir: Path, config: ASRConfig = ASRConfig()) -> None:
        from faster_whisper import WhisperModel

        try:
            self._model = WhisperModel(str(model_dir), device=config.device, compute_type=config.compute_type,
                                       cpu_threads=config.threads, num_workers=1)
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"cannot load ASR model {model_dir}: {err}", code=MODEL_LOAD_FAILED) from err
        self.config = config
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def transcribe_sync(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> Transcript:
        started = time.perf_counter()
        c = self.config
        segments, _info = self._model.transcribe(
            audio.astype(np.float32, copy=False), language=c.language, beam_size=c.beam_size, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True, temperature=0.0,
            # Our own guard below decides on no-speech, with the whole transcript in view.
            no_speech_threshold=None, log_prob_threshold=None,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        no_speech = max((s.no_speech_prob for s in segments), default=1.0)
        logprob = float(np.mean([s.avg_logprob for s in segments])) if segments else -10.0
        rejected = None
        if not _norm(text):
            rejected = "empty"
        elif no_speech > c.no_speech_threshold and logprob < c.logprob_threshold:
            rejected = "no-speech"
        elif _norm(text) in HALLUCINATIONS and (no_speech > 0.3 or speech_ratio < 0.5):
            rejected = "hallucination"
        return Transcript(text=text, no_speech_prob=round(no_speech, 3), avg_logprob=round(logprob, 3),
                          asr_ms=round((time.perf_counter() - started) * 1000, 1), rejected=rejected)

    async def transcribe(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> Transcript:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: self.transcribe_sync(audio, speech_ratio=speech_ratio))

    def warm(self) -> None:
        self.transcribe_sync(np.zeros(16000, dtype=np.float32))
