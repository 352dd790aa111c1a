"""The turn model's input: Whisper log-mel features of the last 8 s of audio.

Computed with faster-whisper's own numpy ``FeatureExtractor`` (already a dependency),
on the waveform normalised to zero mean and unit variance, as Smart Turn v3 was trained
(``WhisperFeatureExtractor(chunk_length=8, do_normalize=True)``): shorter audio is padded
with silence in front, longer audio keeps its end.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor

RATE = 16_000
WINDOW_S = 8
SAMPLES = RATE * WINDOW_S
FRAMES = 800
N_MELS = 80

_EXTRACTOR = FeatureExtractor(feature_size=N_MELS, sampling_rate=RATE, chunk_length=WINDOW_S)


def last_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of ``audio`` (16 kHz), zero-padded in front when shorter."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size >= SAMPLES:
        return audio[-SAMPLES:]
    return np.concatenate([np.zeros(SAMPLES - audio.size, dtype=np.float32), audio])


def turn_features(audio: np.ndarray) -> np.ndarray:
    """(80, 800) float32 log-mel of the last 8 s of 16 kHz ``audio``."""
    x = last_window(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    features = _EXTRACTOR(x.astype(np.float32), padding=0)
    return np.ascontiguousarray(features[:, :FRAMES], dtype=np.float32)


def with_pause(audio: np.ndarray, tail: np.ndarray, pause_s: float) -> np.ndarray:
    """``audio`` then the silence ``tail`` heard after it, repeated up to ``pause_s`` (the room's own quiet, not
    digital zeros): what the model would hear if the pause lasts that long. A longer tail is kept whole."""
    want = int(round(pause_s * RATE))
    if tail.size == 0:
        tail = np.zeros(want, dtype=np.float32)
    elif tail.size < want:
        tail = np.tile(tail, -(-want // tail.size))[:want]
    return np.concatenate([audio, tail]).astype(np.float32, copy=False)
