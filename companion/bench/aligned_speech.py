"""A whole sentence spoken once, cut between two words: a pause spliced in keeps the sentence's own melody.

Speaking the two halves of "I want to tell you about | my dog" separately makes the first half end
with a finished sentence's falling voice, which no child pausing mid-sentence has: the end-of-turn
model would rightly call it finished. So the paused set speaks the whole line in one TTS call and
finds the word boundary with faster-whisper's word timestamps (the robot's own Whisper folder;
espeak's phonemes cannot be used: it merges "in the", "to be" into one word), then cuts at the
quietest 10 ms near that boundary with short fades, so no click marks the cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

RATE = 16_000
_FRAME = RATE // 100
#: The cut is looked for this far either side of Whisper's word boundary (its timestamps are ~20-60 ms off).
SEARCH_S = 0.06
FADE_S = 0.008


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


class WordAligner:
    """Where each word of a sentence ends, by faster-whisper's word timestamps (bench only)."""

    def __init__(self, whisper_dir: Path, threads: int = 2) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(str(whisper_dir), device="cpu", compute_type="int8", cpu_threads=threads)

    def boundaries(self, audio: np.ndarray) -> list[tuple[str, float, float]]:
        """(word, start s, end s) of each word heard in 16 kHz ``audio``."""
        segments, _ = self._model.transcribe(audio, language="en", word_timestamps=True, beam_size=1,
                                             vad_filter=False, condition_on_previous_text=False)
        return [(w.word, float(w.start), float(w.end)) for s in segments for w in (s.words or [])]


def cut_between(audio: np.ndarray, words: list[tuple[str, float, float]], first: str, second: str) -> int | None:
    """The sample between the last word of ``first`` and the first of ``second`` (the quietest 10 ms near
    Whisper's boundary); None when Whisper heard a different number of words than were said (a misheard
    word is fine, a joined or split one would move the boundary)."""
    k = len(_words(first))
    heard = [(start, end) for word, start, end in words for _ in _words(word)]
    if k < 1 or len(heard) != k + len(_words(second)):
        return None
    lo = max(0, int((heard[k - 1][1] - SEARCH_S) * RATE))
    hi = min(audio.size - _FRAME, int((heard[k][0] + SEARCH_S) * RATE))
    if hi <= lo:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(audio[lo:hi + _FRAME], _FRAME)[::80]
    quietest = int(np.argmin(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))))
    return lo + quietest * 80 + _FRAME // 2


def split_speech(speak: Callable[[str], np.ndarray], aligner: WordAligner, first: str,
                 second: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``first second`` spoken as one sentence and cut between them, each side faded over 8 ms
    (None: no boundary found; the caller speaks the halves separately)."""
    audio = speak(f"{first} {second}")
    cut = cut_between(audio, aligner.boundaries(audio), first, second)
    if cut is None:
        return None
    fade = np.linspace(1.0, 0.0, int(FADE_S * RATE), dtype=np.float32)
    head, tail = audio[:cut].copy(), audio[cut:].copy()
    n = min(fade.size, head.size, tail.size)
    head[head.size - n:] *= fade[fade.size - n:]
    tail[:n] *= fade[::-1][:n]
    return head, tail
