"""Synthetic voices for the speaker test set (``companion eval speakers``): espeak-ng, at bench time only.

The speaker-identification benchmark needs many voices that differ (accent, voice variant, pitch,
pace); espeak-ng has dozens of them and is small. espeak-ng is GPL-3.0: it is loaded here only,
through ctypes, from the ``espeakng-loader`` wheel (which ships ``libespeak-ng.so`` and
``espeak-ng-data``; installed with the test extras), at bench and test time. Nothing on the robot
imports this module, links espeak-ng or ships it.

How the library is driven, and why:

- ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, path, espeakINITIALIZE_DONT_EXIT)``. ``path`` is the
  directory that *contains* ``espeak-ng-data`` (the wheel's own data, always: an explicit path wins
  over ``ESPEAK_DATA_PATH``, and data of another espeak-ng version may not match the library).
  Without a path the wheel's library looks in the directory it was built in, which does not exist
  here; without ``DONT_EXIT`` a failed initialisation calls ``exit()`` in the bench process.
- Output is made reproducible, which plain espeak-ng is not: the pitch flutter phase and gain
  control are function-level statics that run on from one utterance to the next, and the random
  generator behind breath noise (whisper, f2, ...) is seeded from ``time()`` at initialisation.
  So every synthesis loads a private copy of the library afresh (about 6 ms), seeds its generator
  with ``espeak_ng_SetRandSeed``, synthesises, terminates and unloads it: the same text and voice
  give the same samples, whatever was spoken before. The copy is private so that no other user
  of the wheel's library in this process can keep it loaded (and its state alive).
- espeak-ng is global state: a module-level lock serialises every synthesis.
- An unknown variant is silently ignored by ``espeak_SetVoiceByName`` (it still returns OK), so
  variants are checked against ``espeak-ng-data/voices/!v`` here; unknown languages are refused by
  espeak itself.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import shutil
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

# -- espeak-ng C API constants (speak_lib.h) -----------------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER
_RAND_SEED = 20_240_601

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_LOCK = threading.Lock()
_chunks: list[bytes] = []


def _on_audio(wav, n: int, _events) -> int:  # noqa: ANN001 - ctypes pointer
    if wav and n > 0:
        _chunks.append(ctypes.string_at(wav, 2 * n))
    return 0  # 0: go on synthesising


#: Kept referenced for the life of the process: espeak holds the pointer.
_CALLBACK = _SYNTH_CALLBACK(_on_audio)


@dataclass(frozen=True)
class _Espeak:
    library: Path  # the private copy
    data: Path  # the espeak-ng-data folder


@functools.cache
def _espeak() -> _Espeak:
    """The wheel's library (copied once per process) and data; RuntimeError when not installed."""
    try:
        import espeakng_loader
    except ImportError as err:
        raise RuntimeError("espeak-ng is missing: pip install espeakng-loader (the test extras)") from err
    source = Path(espeakng_loader.get_library_path())
    data = Path(espeakng_loader.get_data_path())
    if not source.is_file() or not (data / "phontab").is_file():
        raise RuntimeError(f"espeakng-loader is incomplete: no {source} or no {data / 'phontab'}")
    folder = Path(tempfile.mkdtemp(prefix="companion-espeak-"))
    atexit.register(shutil.rmtree, folder, True)
    library = folder / "libespeak-ng-bench.so"
    shutil.copyfile(source, library)
    return _Espeak(library=library, data=data)


def _open(library: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library))
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    return lib


def _close(lib: ctypes.CDLL) -> None:
    import _ctypes

    _ctypes.dlclose(lib._handle)


@functools.cache
def espeak_available() -> bool:
    """True when espeakng-loader is installed and its library loads."""
    try:
        _close(_open(_espeak().library))
    except (RuntimeError, OSError, AttributeError):
        return False
    return True


@dataclass(frozen=True)
class EspeakVoice:
    """An espeak-ng voice: a language (accent) and an optional variant from ``espeak-ng-data/voices/!v``
    (m1..m8, f1..f5, klatt, ...), with pitch 0-100 (50 is the voice's own), rate in words a minute
    (80-450) and pitch range 0-100 (50 is the voice's own; lower is flatter)."""

    language: str = "en-us"
    variant: str = ""
    pitch: int = 50
    rate: int = 160
    pitch_range: int = 50

    def __post_init__(self) -> None:
        if not self.language or "+" in self.language or "/" in self.variant or "+" in self.variant:
            raise ValueError(f"bad espeak-ng voice: language {self.language!r}, variant {self.variant!r}")
        if not (0 <= self.pitch <= 100 and 0 <= self.pitch_range <= 100 and 80 <= self.rate <= 450):
            raise ValueError(f"espeak-ng voice out of range: pitch {self.pitch} (0-100), "
                             f"pitch_range {self.pitch_range} (0-100), rate {self.rate} (80-450)")

    @property
    def name(self) -> str:
        """What ``espeak_SetVoiceByName`` is given: ``en-us`` or ``en-us+f3``."""
        return f"{self.language}+{self.variant}" if self.variant else self.language

    @property
    def key(self) -> str:
        """``en-us+f3/p50/r160`` (``/g30`` added when the pitch range is not the default 50)."""
        key = f"{self.name}/p{self.pitch}/r{self.rate}"
        return key if self.pitch_range == 50 else f"{key}/g{self.pitch_range}"


def synthesize(text: str, voice: EspeakVoice) -> tuple[np.ndarray, int]:
    """``text`` spoken by ``voice``: float32 mono in [-1, 1], and espeak's sample rate (22050).

    The same text and voice always give the same samples. RuntimeError when espeak-ng is missing,
    refuses the voice, or returns no audio.
    """
    if not text.strip():
        raise ValueError("nothing to synthesise: the text is blank")
    espeak = _espeak()
    if voice.variant and not (espeak.data / "voices" / "!v" / voice.variant).is_file():
        raise RuntimeError(f"espeak-ng has no voice variant {voice.variant!r} "
                           f"(the variants are the files in {espeak.data / 'voices' / '!v'})")
    encoded = text.encode("utf-8")
    with _LOCK:
        _chunks.clear()
        lib = _open(espeak.library)
        try:
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(espeak.data.parent).encode(),
                                         _INITIALIZE_DONT_EXIT)
            if rate <= 0:
                raise RuntimeError(f"espeak-ng did not initialise from {espeak.data} (returned {rate})")
            try:
                lib.espeak_SetSynthCallback(_CALLBACK)
                status = lib.espeak_SetVoiceByName(voice.name.encode("utf-8"))
                if status != 0:
                    raise RuntimeError(f"espeak-ng refused the voice {voice.name!r} (status {status}): "
                                       f"no such language in {espeak.data / 'lang'}")
                for parameter, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.pitch_range)):
                    status = lib.espeak_SetParameter(parameter, value, 0)
                    if status != 0:
                        raise RuntimeError(f"espeak-ng refused parameter {parameter}={value} (status {status})")
                lib.espeak_ng_SetRandSeed(_RAND_SEED)
                status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                if status != 0:
                    raise RuntimeError(f"espeak-ng failed to synthesise with {voice.name!r} (status {status})")
                lib.espeak_Synchronize()
            finally:
                lib.espeak_Terminate()
        finally:
            _close(lib)
        samples = np.frombuffer(b"".join(_chunks), dtype=np.int16)
        _chunks.clear()
    if samples.size == 0 or not np.any(samples):
        raise RuntimeError(f"espeak-ng returned no audio for {text!r} with {voice.key}")
    return (samples.astype(np.float32) / 32768.0), int(rate)


def _resample(audio: np.ndarray, ratio: Fraction) -> np.ndarray:
    from scipy.signal import resample_poly

    x = np.asarray(audio, dtype=np.float32)
    if ratio == 1:
        return x.copy()
    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


def speed_shift(audio: np.ndarray, factor: float) -> np.ndarray:
    """What ``sox speed FACTOR`` does: pitch, formants and tempo all rise by ``factor`` (a smaller,
    younger-sounding voice). The result has about ``len(audio) / factor`` samples and is played at
    the same sample rate as ``audio``."""
    if not factor > 0:
        raise ValueError(f"speed factor must be positive, not {factor}")
    return _resample(audio, Fraction(1 / factor).limit_denominator(100))


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """``audio`` at ``rate`` resampled to 16 kHz, float32."""
    return _resample(audio, Fraction(16_000, int(rate)))


def median_f0(audio: np.ndarray, rate: int, fmin: float = 70.0, fmax: float = 500.0) -> float:
    """Median fundamental frequency (Hz) over the voiced frames, by normalised autocorrelation.

    Frames of 30 ms every 10 ms; a frame is voiced when it is loud (RMS over a tenth of the loudest
    frame's) and periodic (normalised correlation over 0.6 at its best lag in ``fmin``..``fmax``).
    The shortest lag within 90 % of the best is taken, against octave errors. NaN when no frame is voiced.
    """
    x = np.asarray(audio, dtype=np.float64)
    lag_min, lag_max = int(rate / fmax), int(np.ceil(rate / fmin))
    width, hop = int(0.03 * rate), int(0.01 * rate)
    span = width + lag_max + 1
    if x.size < span:
        return float("nan")
    frames = np.lib.stride_tricks.sliding_window_view(x, span)[::hop]
    frames = frames - frames[:, :width].mean(axis=1, keepdims=True)
    head = frames[:, :width]
    rms = np.sqrt((head ** 2).mean(axis=1))
    loud = rms > 0.1 * rms.max() if rms.max() > 0 else np.zeros(len(frames), bool)
    frames, head = frames[loud], head[loud]
    if not len(frames):
        return float("nan")
    energy0 = (head ** 2).sum(axis=1)
    squares = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    lags = np.arange(lag_min, lag_max + 1)
    nccf = np.empty((len(frames), len(lags)))
    for i, lag in enumerate(lags):
        energy = squares[:, lag + width] - squares[:, lag]
        nccf[:, i] = (head * frames[:, lag:lag + width]).sum(axis=1) / np.sqrt(energy0 * energy + 1e-12)
    f0s = []
    for row in nccf:
        best = row.max()
        if best < 0.6:
            continue
        peaks = np.flatnonzero((row[1:-1] >= row[:-2]) & (row[1:-1] >= row[2:]) & (row[1:-1] >= 0.9 * best)) + 1
        i = int(peaks[0]) if len(peaks) else int(row.argmax())
        shift = 0.0
        if 0 < i < len(row) - 1:  # parabolic interpolation of the peak
            a, b, c = row[i - 1], row[i], row[i + 1]
            denominator = a - 2 * b + c
            shift = 0.5 * (a - c) / denominator if denominator else 0.0
        f0s.append(rate / (lags[i] + shift))
    return float(np.median(f0s)) if f0s else float("nan")


#: Voices that differ: accents of the English family, espeak's voice variants (including the klatt
#: synthesisers), pitch and pace. Chosen so their median F0 spreads out (tests/test_bench_voices.py).
#: Every English accent espeak-ng has but the New York and Shavian ones; median F0 from about 75 to 240 Hz,
#: neighbours at least 10 % apart (``companion eval speakers`` adds each one sped up, child-like).
VOICE_POOL: tuple[EspeakVoice, ...] = (
    EspeakVoice("en-gb-x-gbcwmd", "m8", pitch=40, rate=175),  # West Midlands, deep
    EspeakVoice("en-us", "klatt4", pitch=30, rate=140),  # American, klatt synthesiser, slow
    EspeakVoice("en", "m3", pitch=40, rate=150),  # British
    EspeakVoice("en-us", "", pitch=54, rate=160),  # American, espeak's default voice
    EspeakVoice("en-gb-x-gbclan", "m7", pitch=68, rate=155, pitch_range=30),  # Lancaster, flat
    EspeakVoice("en-gb-x-rp", "klatt", pitch=80, rate=165),  # Received Pronunciation, klatt, high male
    EspeakVoice("en-029", "f4", pitch=45, rate=150),  # Caribbean
    EspeakVoice("en-gb-scotland", "f2", pitch=48, rate=170),  # Scottish, breathy
    EspeakVoice("en-us", "f3", pitch=50, rate=160),  # American
    EspeakVoice("en-gb-x-rp", "Annie", pitch=58, rate=145),  # Received Pronunciation, high
)
