"""faster-whisper from numpy arrays (never a temp file), off the event loop.

Whisper's encoder is trained on 30-second windows and faster-whisper always pads
to one; for a child's 1-5 s utterance that pads ~90 % silence and the encoder
(quadratic attention) dominates the turn's latency. With ``window = "fit"`` the
features are padded only to the utterance plus ``window_pad_s`` (at least
``window_min_s``), and CTranslate2's encoder and decoder are called directly with
faster-whisper's own feature extractor, tokenizer and suppression list. On this
project's 2-core CPU, whisper-base's median in the loop is ~160 ms instead of
757 ms (`companion bench` vs `companion bench --asr-window full`). A short window tempts Whisper to repeat the utterance into the padding
("Do you like pizza? Do you like pizza? Do you like"); decoding with timestamps
shows where each segment starts, and segments starting after the audio ends are
dropped. ``companion bench`` reports the word error rate of both windows
(``--asr-window full``). Utterances longer than 28 s go through faster-whisper's
own long-form path.

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
    #: "fit": encoder window fitted to the utterance (fast); "full": Whisper's 30 s window.
    window: str = "fit"
    #: Silence after the speech inside a fitted window, and the smallest window (seconds).
    window_pad_s: float = 1.0
    window_min_s: float = 4.0
    #: Tokens allowed per second of audio in a fitted window (a runaway repeat cannot run long).
    max_tokens_per_s: float = 12.0


@dataclass(frozen=True)
class Transcript:
    text: str
    #: Highest no-speech probability over the segments.
    no_speech_prob: float
    avg_logprob: float
    asr_ms: float
    #: Why the transcript is not a child's words (None: keep it).
    rejected: str | None = None


#: Longest audio decoded with a fitted window; longer goes through faster-whisper's long-form path.
MAX_FIT_S = 28


def _inside(ids: list[int], timestamp_begin: int, eot: int, until_s: float) -> list[int]:
    """Text tokens of the segments that start before ``until_s`` (Whisper's timestamps: 20 ms steps)."""
    out: list[int] = []
    opened, keep = False, True
    for t in ids:
        if t >= timestamp_begin:
            if not opened:
                keep = (t - timestamp_begin) * 0.02 < until_s
            opened = not opened
        elif t < eot and keep:
            out.append(t)
    return out


def _norm(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


def judge(text: str, no_speech: float, logprob: float, speech_ratio: float, config: ASRConfig) -> str | None:
    """Why a transcript is not a child's words (None: keep it): nothing in it, Whisper's own no-speech
    verdict, or one of its stock phrases on audio that is mostly not speech. A remote ASR server that
    gives no probabilities (0, 0) is judged on its text and the speech ratio alone."""
    if not _norm(text):
        return "empty"
    if no_speech > config.no_speech_threshold and logprob < config.logprob_threshold:
        return "no-speech"
    if _norm(text) in HALLUCINATIONS and (no_speech > 0.3 or speech_ratio < 0.5):
        return "hallucination"
    return None


class WhisperASR:
    def __init__(self, model_dir: Path, config: ASRConfig = ASRConfig()) -> None:
        from faster_whisper import WhisperModel

        try:
            self._model = WhisperModel(str(model_dir), device=config.device, compute_type=config.compute_type,
                                       cpu_threads=config.threads, num_workers=1)
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"cannot load ASR model {model_dir}: {err}", code=MODEL_LOAD_FAILED) from err
        if config.window not in ("fit", "full"):
            raise ValueError(f"asr.window must be 'fit' or 'full', not {config.window!r}")
        self.config = config
        self._tokenizer = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def transcribe_sync(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> Transcript:
        started = time.perf_counter()
        c = self.config
        audio = audio.astype(np.float32, copy=False)
        if c.window == "fit" and audio.size < MAX_FIT_S * 16_000:
            text, no_speech, logprob = self._decode_fitted(audio)
        else:
            text, no_speech, logprob = self._decode_full(audio)
        return Transcript(text=text, no_speech_prob=round(no_speech, 3), avg_logprob=round(logprob, 3),
                          asr_ms=round((time.perf_counter() - started) * 1000, 1),
                          rejected=judge(text, no_speech, logprob, speech_ratio, c))

    def _decode_fitted(self, audio: np.ndarray) -> tuple[str, float, float]:
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        c, fw = self.config, self._model
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(fw.hf_tokenizer, fw.model.is_multilingual, task="transcribe",
                                        language=c.language)
            self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))
        tok = self._tokenizer
        features = fw.feature_extractor(audio)
        per_s = fw.feature_extractor.sampling_rate // fw.feature_extractor.hop_length  # 100 frames a second
        content = min(features.shape[-1], MAX_FIT_S * per_s)
        window = max(content + int(c.window_pad_s * per_s), int(c.window_min_s * per_s))
        window = min(3000, -(-window // 100) * 100)  # whole seconds: fewer distinct shapes
        batch = np.zeros((1, features.shape[0], window), dtype=np.float32)
        batch[0, :, :content] = features[:, :content]
        encoded = fw.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)
        # With timestamps: Whisper marks where each segment starts, so a segment it "hears" in the padding
        # (a repeat of the utterance, the classic short-window hallucination) can be told apart and dropped.
        prompt = list(tok.sot_sequence)
        seconds = audio.size / 16_000
        max_new = int(8 + c.max_tokens_per_s * seconds)
        result = fw.model.generate(encoded, [prompt], beam_size=c.beam_size, max_length=len(prompt) + max_new,
                                   return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                                   suppress_tokens=self._suppress)[0]
        all_ids = result.sequences_ids[0]
        ids = _inside(all_ids, tok.timestamp_begin, tok.eot, seconds - 0.2)
        logprob = result.scores[0] * len(all_ids) / (len(all_ids) + 1) if all_ids else -10.0
        return tok.decode(ids).strip(), float(result.no_speech_prob), float(logprob)

    def _decode_full(self, audio: np.ndarray) -> tuple[str, float, float]:
        c = self.config
        segments, _info = self._model.transcribe(
            audio, language=c.language, beam_size=c.beam_size, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True, temperature=0.0,
            # Our own guard below decides on no-speech, with the whole transcript in view.
            no_speech_threshold=None, log_prob_threshold=None,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        no_speech = max((s.no_speech_prob for s in segments), default=1.0)
        logprob = float(np.mean([s.avg_logprob for s in segments])) if segments else -10.0
        return text, no_speech, logprob

    async def transcribe(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> Transcript:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: self.transcribe_sync(audio, speech_ratio=speech_ratio))

    def warm(self) -> None:
        """One pass per common window size, so the first turns do not pay CTranslate2's first-shape cost."""
        for seconds in (1, 3, 5):
            self.transcribe_sync(np.zeros(16000 * seconds, dtype=np.float32))
