"""Reading audio files in chunks (any format PyAV decodes) and writing WAV.

PyAV is already installed as faster-whisper's decoder; it decodes WAV, FLAC, MP3
and Ogg at any rate and channel count and resamples to 16 kHz mono as it streams,
so a ten-minute file is never held in memory whole.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from typing import BinaryIO
from pathlib import Path

import numpy as np

from companion.audio.frames import PIPELINE_RATE
from companion.errors import CompanionError

SUPPORTED = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a")


class AudioInputError(CompanionError):
    code = "AUDIO_INPUT_INVALID"


def read_chunks(path: Path, *, rate: int = PIPELINE_RATE, chunk_samples: int = 16_000,
                channel: int | None = None) -> Iterator[np.ndarray]:
    """Yield float32 mono chunks at ``rate``; coded errors for missing, empty, unsupported, corrupt files.

    ``channel`` (0 left, 1 right) takes one channel of a stereo file instead of the mix."""
    if not path.is_file():
        raise AudioInputError(f"audio file {path} does not exist", code="AUDIO_FILE_NOT_FOUND")
    if path.stat().st_size == 0:
        raise AudioInputError(f"audio file {path} is empty (0 bytes)", code="AUDIO_FILE_EMPTY")
    if path.suffix.lower() not in SUPPORTED:
        raise AudioInputError(f"{path.name}: unsupported audio type '{path.suffix}'; use one of {', '.join(SUPPORTED)}",
                              code="AUDIO_FORMAT_UNSUPPORTED")
    yield from _chunks(str(path), path.name, path.stat().st_size, rate=rate, chunk_samples=chunk_samples,
                       channel=channel)


def _chunks(source, name: str, size: int, *, rate: int, chunk_samples: int, channel: int | None) -> Iterator[np.ndarray]:
    """Decode ``source`` (a path, or a binary file object held in memory) as ``read_chunks`` does."""
    import av

    try:
        container = av.open(source)
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as err:
        raise AudioInputError(f"{name} is not a readable audio file: {err}", code="AUDIO_FILE_CORRUPT") from err
    pending: list[np.ndarray] = []
    pending_n = 0
    produced = 0
    try:
        if not container.streams.audio:
            raise AudioInputError(f"{name} holds no audio stream", code="AUDIO_FILE_CORRUPT")
        resampler = av.AudioResampler(format="fltp", layout="mono" if channel is None else "stereo", rate=rate)
        pick = channel or 0
        stream = container.streams.audio[0]
        try:
            for frame in _decode(container, stream):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray()[pick].astype(np.float32, copy=False)
                    pending.append(arr)
                    pending_n += arr.size
                    while pending_n >= chunk_samples:
                        joined = np.concatenate(pending)
                        yield joined[:chunk_samples]
                        produced += chunk_samples
                        rest = joined[chunk_samples:]
                        pending, pending_n = ([rest] if rest.size else []), rest.size
            for out in resampler.resample(None):
                pending.append(out.to_ndarray()[pick].astype(np.float32, copy=False))
        except (av.error.InvalidDataError, av.error.FFmpegError) as err:
            raise AudioInputError(f"{name} is corrupt: {err}", code="AUDIO_FILE_CORRUPT") from err
        if pending:
            tail = np.concatenate(pending)
            if tail.size:
                produced += tail.size
                yield tail
        if produced == 0:
            # A header with no samples is an empty recording; kilobytes that decode to nothing are damage.
            if size <= 1024:
                raise AudioInputError(f"{name} holds no audio samples", code="AUDIO_FILE_EMPTY")
            raise AudioInputError(f"{name} holds no decodable audio", code="AUDIO_FILE_CORRUPT")
    finally:
        container.close()


def _decode(container, stream):
    for packet in container.demux(stream):
        yield from packet.decode()


def read_all(path: Path, *, rate: int = PIPELINE_RATE, max_seconds: float = 600.0,
             channel: int | None = None) -> np.ndarray:
    """A whole (bounded) file; for tests and short clips."""
    chunks, total = [], 0
    for chunk in read_chunks(path, rate=rate, channel=channel):
        chunks.append(chunk)
        total += chunk.size
        if total > max_seconds * rate:
            raise AudioInputError(f"{path.name} is longer than {max_seconds:.0f} s", code="AUDIO_TOO_LONG")
    return np.concatenate(chunks)


def read_all_from(data: BinaryIO, *, name: str, rate: int = PIPELINE_RATE, max_seconds: float = 600.0) -> np.ndarray:
    """A whole (bounded) recording held in memory (an upload): decoded without touching the disk."""
    size = data.seek(0, 2)
    data.seek(0)
    if size == 0:
        raise AudioInputError(f"{name} is empty (0 bytes)", code="AUDIO_FILE_EMPTY")
    chunks, total = [], 0
    for chunk in _chunks(data, name, size, rate=rate, chunk_samples=16_000, channel=None):
        chunks.append(chunk)
        total += chunk.size
        if total > max_seconds * rate:
            raise AudioInputError(f"{name} is longer than {max_seconds:.0f} s", code="AUDIO_TOO_LONG")
    return np.concatenate(chunks)


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> 16-bit little-endian PCM (WAV files, the Wyoming protocol)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    """16-bit little-endian PCM -> float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """16-bit PCM mono WAV, written to a temp name and renamed so a crash leaves no half file."""
    pcm = to_pcm16(samples)
    tmp = path.with_suffix(path.suffix + ".part")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    tmp.replace(path)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling of a whole clip (PyAV/libswresample)."""
    if src_rate == dst_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst_rate)
    frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = src_rate
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
