"""The fixed utterance set of ``companion bench``: real recordings cut into 1-5 s turns, plus generated speech.

Recordings are the ones the project carries (``companion/data/recordings``, see
``companion.paths.recordings_dir``; its README holds the reference transcripts, read from
there, never copied into code), or any folder laid out the same way. Each file, or
each channel of a stereo file, is cut where the VAD hears a pause, so every piece is a
turn a child could say. Word error rate of a recording is counted over its pieces
joined in order, against the whole reference. Generated lines are spoken by the
robot's own piper voice; the line is the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from companion.audio.files import read_all
from companion.audio.frames import AudioFrame
from companion.errors import CompanionError
from companion.paths import recordings_dir
from companion.vad.endpoint import EndpointConfig, Endpointer, UtteranceEnded
from companion.vad.silero import SileroVAD

RATE = 16_000
#: Pauses shorter than this stay inside a piece; longer ones separate turns.
JOIN_GAP_S = 0.35
MAX_PIECE_S = 5.0
#: Audio kept before and after the speech of a piece.
MARGIN_S = (0.2, 0.25)


@dataclass(frozen=True, eq=False)
class BenchUtterance:
    label: str
    #: The recording (file, or file#left/right) or "generated".
    source: str
    audio: np.ndarray
    #: Reference text of this piece (generated lines) or None (recordings: see ``references``).
    reference: str | None = None
    #: Some pieces of its recording are left out of this run (``--limit``): no WER for that recording.
    partial: bool = False

    @property
    def seconds(self) -> float:
        return self.audio.size / RATE


def recording_references(audio_dir: Path | None = None) -> dict[str, str | None]:
    """source -> reference transcript, from the table in the recordings' README (default: the carried ones)."""
    audio_dir = recordings_dir() if audio_dir is None else audio_dir
    refs: dict[str, str | None] = {}
    readme = audio_dir / "README.md"
    if not readme.is_file():
        return refs
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not (audio_dir / cells[0]).is_file():
            continue
        name, _what, ref = cells
        if "left:" in ref and "right:" in ref:
            left, right = ref.split("right:", 1)
            refs[f"{name}#left"] = left.replace("left:", "").strip()
            refs[f"{name}#right"] = right.strip()
        else:
            refs[name] = None if ref.startswith("(") else ref
    return refs


def speech_spans(audio: np.ndarray, vad_path: Path) -> list[tuple[float, float]]:
    """(start, end) seconds of speech, with pauses longer than ``JOIN_GAP_S`` separating spans."""
    ep = Endpointer(SileroVAD(vad_path), EndpointConfig(end_silence_ms=int(JOIN_GAP_S * 1000), early_end_ms=0,
                                                        min_speech_ms=200))
    spans = []
    padded = np.concatenate([audio, np.zeros(RATE, np.float32)])
    for i in range(0, padded.size, 512):
        for event in ep.push(AudioFrame.of(padded[i:i + 512], RATE, i / RATE)):
            if isinstance(event, UtteranceEnded):
                spans.append((event.utterance.speech_start, event.utterance.speech_end))
    return spans


def cut(audio: np.ndarray, spans: list[tuple[float, float]]) -> list[np.ndarray]:
    """Pieces of at most ``MAX_PIECE_S`` of speech, each with a little silence either side."""
    pieces = []
    for k, (start, end) in enumerate(spans):
        lo = max(start - MARGIN_S[0], 0.0 if k == 0 else (spans[k - 1][1] + start) / 2)
        hi = min(end + MARGIN_S[1], audio.size / RATE if k == len(spans) - 1 else (end + spans[k + 1][0]) / 2)
        piece = audio[int(lo * RATE):int(hi * RATE)]
        step = int(MAX_PIECE_S * RATE)
        pieces += [piece[i:i + step] for i in range(0, piece.size, step)]
    return pieces


def recordings(audio_dir: Path | None, vad_path: Path) -> tuple[list[BenchUtterance], dict[str, str | None]]:
    """The recordings of ``audio_dir`` (None: the carried ones) cut into turns; a folder without any is an error."""
    audio_dir = recordings_dir() if audio_dir is None else audio_dir
    refs = recording_references(audio_dir)
    if not refs:
        raise CompanionError(f"no recordings in {audio_dir}: it needs a README.md with a table "
                             f"'| file | what it is | reference transcript |' naming files beside it",
                             code="BENCH_RECORDINGS_MISSING")
    out = []
    for source in refs:
        name, _, side = source.partition("#")
        audio = read_all(audio_dir / name, channel={"": None, "left": 0, "right": 1}[side])
        for i, piece in enumerate(cut(audio, speech_spans(audio, vad_path))):
            out.append(BenchUtterance(f"{source} [{i + 1}]", source, piece))
    return out, refs


def generated_lines() -> list[str]:
    text = resources.files("companion.bench").joinpath("data/lines.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def generated(speak, lines: list[str]) -> list[BenchUtterance]:
    """``speak(text) -> 16 kHz samples``."""
    return [BenchUtterance(line, "generated", speak(line), reference=line) for line in lines]


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]+", " ", text.lower())).strip()
