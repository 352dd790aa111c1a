"""Reading audio: any format and rate to 16 kHz mono, chunked, with coded errors for bad files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from companion.audio.files import AudioInputError, read_all, read_chunks, resample, write_wav
from tests.conftest import RECORDINGS


def _wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


@pytest.mark.parametrize("name,seconds", [("jfk.flac", 11.0), ("hotwords.mp3", 4.0), ("stereo_diarization.wav", 5.0)])
def test_carried_recordings_decode_to_16k_mono(name, seconds):
    audio = read_all(RECORDINGS / name)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / 16000 - seconds) < 0.1
    assert np.abs(audio).max() > 0.1


def test_wrong_rate_stereo_wav_is_resampled(tmp_path):
    t = np.arange(44100 * 2) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone], axis=1).reshape(-1)
    audio = read_all(_wav(tmp_path / "tone.wav", stereo, 44100, channels=2))
    assert abs(audio.size - 32000) < 50
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / audio.size - 440) < 5


def test_long_file_is_read_in_bounded_chunks(tmp_path):
    """A ten-minute monologue is streamed, never held whole."""
    rng = np.random.default_rng(0)
    path = _wav(tmp_path / "long.wav", rng.normal(0, 0.1, 8000 * 600), 8000)
    sizes = [c.size for c in read_chunks(path, chunk_samples=16000)]
    assert max(sizes) <= 16000 and abs(sum(sizes) - 600 * 16000) < 100
    assert len(sizes) >= 600


@pytest.mark.parametrize("content,name,code", [
    (b"", "empty.wav", "AUDIO_FILE_EMPTY"),
    (b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10, "corrupt.wav", "AUDIO_FILE_CORRUPT"),
    (bytes(range(256)) * 40, "noise.flac", "AUDIO_FILE_CORRUPT"),
    (b"hello, I am not audio", "notes.txt", "AUDIO_FORMAT_UNSUPPORTED"),
])
def test_bad_files_give_coded_errors(tmp_path, content, name, code):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioInputError) as info:
        list(read_chunks(path))
    assert info.value.code == code


def test_missing_file_and_header_only_wav(tmp_path):
    with pytest.raises(AudioInputError) as info:
        list(read_chunks(tmp_path / "absent.wav"))
    assert info.value.code == "AUDIO_FILE_NOT_FOUND"
    header_only = _wav(tmp_path / "h.wav", np.zeros(0), 16000)
    with pytest.raises(AudioInputError) as info:
        list(read_chunks(header_only))
    assert info.value.code in ("AUDIO_FILE_EMPTY", "AUDIO_FILE_CORRUPT")


def test_write_wav_round_trip_and_resample(tmp_path):
    x = (0.3 * np.sin(np.arange(22050) / 22050 * 2 * np.pi * 300)).astype(np.float32)
    write_wav(tmp_path / "x.wav", x, 22050)
    back = read_all(tmp_path / "x.wav")
    assert abs(back.size - 16000) < 20
    assert not (tmp_path / "x.wav.part").exists()
    assert resample(x, 22050, 22050) is x or np.array_equal(resample(x, 22050, 22050), x)
