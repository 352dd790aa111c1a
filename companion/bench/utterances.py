"""The fixed utterance set of ``companion bench``: real recordings, generated speech, and the turn-taking set.

Recordings are the ones the project carries (``companion/data/recordings``, see
``companion.paths.recordings_dir``; its README holds the reference transcripts, read from
there, never copied into code), or any folder laid out the same way. Each file, or
each channel of a stereo file, is played whole as one turn: its natural pauses are
pauses inside a sentence, which an end-of-turn model must wait through (cut into
pieces at pauses they would be fragments the robot rightly waits on). Only a recording
longer than ``WHOLE_MAX_S`` is cut at pauses into pieces of at most ``PIECE_MAX_S``.
Word error rate of a recording is counted over its turns joined in order, against the
whole reference. Generated lines are spoken by the robot's own piper voice; the line
is the reference. The turn-taking set (``data/paused.txt``) is generated the same
way: sentences with a pause spliced inside, and short complete answers.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable
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

log = logging.getLogger(__name__)

RATE = 16_000
#: Pauses shorter than this stay inside a speech span; longer ones separate spans.
JOIN_GAP_S = 0.35
#: A recording up to this long is played whole, as one turn.
WHOLE_MAX_S = 15.0
#: A longer one is cut at pauses into pieces of at most this long.
PIECE_MAX_S = 12.0
#: Audio kept before and after the speech of a piece.
MARGIN_S = (0.2, 0.25)
#: The silence spliced inside a paused line is drawn from this range (seconds), seeded per line.
PAUSE_S = (0.6, 1.2)
#: Silence before and after a spliced line.
EDGE_S = 0.2
#: Energy trim: a 10 ms frame is speech when its RMS is within this many dB of the loudest frame's (60: the
#: decay of the last word stays; at 40 its last ~0.1 s went, and the end-of-turn model heard a cut-off word).
TRIM_DB = 60.0
_FRAME = RATE // 100
KINDS = ("recording", "generated", "paused", "short")

Speak = Callable[[str], np.ndarray]
"""``speak(text) -> 16 kHz float32 samples`` (the robot's own voice)."""


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
    #: One of ``KINDS``: "recording" (a carried recording, whole or a piece of a long one), "generated" (a
    #: line of lines.txt), "paused" (a sentence with a pause spliced inside) or "short" (a short complete answer).
    kind: str = "generated"
    #: Seconds from the start of ``audio`` to the end of its last speech (None: no speech found). The robot
    #: speaking before it cut the child off.
    speech_end_s: float | None = None
    #: (start, end) seconds of the silences inside the sentence, where the child had not finished.
    pauses: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"BenchUtterance.kind must be one of {KINDS}, not {self.kind!r}")

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


def pieces(audio: np.ndarray, spans: list[tuple[float, float]]) -> list[tuple[np.ndarray, list[tuple[float, float]]]]:
    """The recording whole, or (longer than ``WHOLE_MAX_S``) cut at pauses into pieces of at most
    ``PIECE_MAX_S``; each with the speech spans inside it, in seconds from the piece's start."""
    total = audio.size / RATE
    bounds = [(0.0, total)] if total <= WHOLE_MAX_S else _piece_bounds(spans or [(0.0, total)], total)
    out = []
    for lo, hi in bounds:
        inside = [(round(max(s, lo) - lo, 3), round(min(e, hi) - lo, 3)) for s, e in spans if e > lo and s < hi]
        out.append((audio[int(round(lo * RATE)):int(round(hi * RATE))], inside))
    return out


def _piece_bounds(spans: list[tuple[float, float]], total: float) -> list[tuple[float, float]]:
    """Consecutive spans grouped while the group (with its margins) fits in ``PIECE_MAX_S``; a single
    span longer than that is cut where it must be."""
    groups: list[list[tuple[float, float]]] = []
    for span in spans:
        if groups and span[1] - groups[-1][0][0] + sum(MARGIN_S) <= PIECE_MAX_S:
            groups[-1].append(span)
        else:
            groups.append([span])
    bounds = []
    for k, group in enumerate(groups):
        start, end = group[0][0], group[-1][1]
        lo = max(start - MARGIN_S[0], 0.0 if k == 0 else (groups[k - 1][-1][1] + start) / 2)
        hi = min(end + MARGIN_S[1], total if k == len(groups) - 1 else (end + groups[k + 1][0][0]) / 2)
        while hi - lo > PIECE_MAX_S:
            bounds.append((lo, lo + PIECE_MAX_S))
            lo += PIECE_MAX_S
        bounds.append((lo, hi))
    return bounds


def recordings(audio_dir: Path | None, vad_path: Path) -> tuple[list[BenchUtterance], dict[str, str | None]]:
    """The recordings of ``audio_dir`` (None: the carried ones), each one turn (see ``pieces``); a folder
    without any is an error."""
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
        cut = pieces(audio, speech_spans(audio, vad_path))
        for i, (piece, spans) in enumerate(cut):
            out.append(BenchUtterance(source if len(cut) == 1 else f"{source} [{i + 1}]", source, piece,
                                      kind="recording", speech_end_s=spans[-1][1] if spans else None,
                                      pauses=tuple((a[1], b[0]) for a, b in zip(spans, spans[1:]))))
    return out, refs


def generated_lines() -> list[str]:
    text = resources.files("companion.bench").joinpath("data/lines.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def generated(speak: Speak, lines: list[str]) -> list[BenchUtterance]:
    return [_whole(speak, line, "generated") for line in lines]


# -- the turn-taking set -----------------------------------------------------------------

@dataclass(frozen=True)
class TurnTakingLines:
    """``data/paused.txt``: sentences with one ``|`` where the child pauses, and short complete answers."""

    paused: tuple[str, ...]
    short: tuple[str, ...]


def turn_taking_lines(text: str | None = None) -> TurnTakingLines:
    """The lines of ``text`` (None: the carried ``data/paused.txt``); a malformed line is an error."""
    if text is None:
        text = resources.files("companion.bench").joinpath("data/paused.txt").read_text(encoding="utf-8")
    halved, answers = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("short:"):
            answer = line[len("short:"):].strip()
            if not answer or "|" in answer:
                raise CompanionError(f"paused.txt line {number}: a short answer needs words and no '|': {raw!r}",
                                     code="BENCH_PAUSED_LINE_INVALID")
            answers.append(answer)
            continue
        halves = [h.strip() for h in line.split("|")]
        if len(halves) != 2 or not all(halves):
            raise CompanionError(f"paused.txt line {number}: a paused line needs exactly one '|' with words "
                                 f"either side: {raw!r}", code="BENCH_PAUSED_LINE_INVALID")
        halved.append(f"{halves[0]} | {halves[1]}")
    return TurnTakingLines(tuple(halved), tuple(answers))


def pause_for(line: str, seed: int) -> float:
    """The pause spliced into ``line``: drawn from ``PAUSE_S`` by the seed and the line alone, so a line's
    pause is the same whichever other lines a run keeps (``--limit``)."""
    rng = np.random.default_rng([seed, zlib.crc32(line.encode("utf-8"))])
    return round(float(rng.uniform(*PAUSE_S)), 3)


def speech_bounds(audio: np.ndarray) -> tuple[int, int]:
    """Samples [first, last) of the 10 ms frames within ``TRIM_DB`` of the loudest ((0, 0): silent)."""
    n = -(-audio.size // _FRAME)
    frames = np.zeros(n * _FRAME, np.float32)
    frames[:audio.size] = audio
    rms = np.sqrt(np.mean(frames.reshape(n, _FRAME).astype(np.float64) ** 2, axis=1)) if n else np.zeros(0)
    if not rms.size or rms.max() <= 1e-5:
        return 0, 0
    voiced = np.flatnonzero(rms >= rms.max() * 10 ** (-TRIM_DB / 20))
    return int(voiced[0] * _FRAME), int(min((voiced[-1] + 1) * _FRAME, audio.size))


def splice(parts: list[np.ndarray], pauses_s: list[float]) -> tuple[np.ndarray, float, tuple[tuple[float, float], ...]]:
    """``parts`` with their silences trimmed, ``pauses_s`` of silence between, ``EDGE_S`` at the ends.

    Returns the audio, the end of its last speech and the pause spans (seconds from its start)."""
    if len(pauses_s) != len(parts) - 1:
        raise ValueError(f"{len(parts)} parts need {len(parts) - 1} pauses, not {len(pauses_s)}")
    edge = np.zeros(int(EDGE_S * RATE), np.float32)
    chunks, at, pauses = [edge], edge.size, []
    for k, part in enumerate(parts):
        lo, hi = speech_bounds(part)
        if hi <= lo:
            raise CompanionError(f"part {k + 1} of a spliced line is silent: the voice said nothing",
                                 code="BENCH_SPEECH_EMPTY")
        chunks.append(part[lo:hi].astype(np.float32, copy=False))
        at += hi - lo
        if k < len(pauses_s):
            gap = int(round(pauses_s[k] * RATE))
            pauses.append((round(at / RATE, 4), round((at + gap) / RATE, 4)))
            chunks.append(np.zeros(gap, np.float32))
            at += gap
    chunks.append(edge)
    return np.concatenate(chunks), round(at / RATE, 4), tuple(pauses)


def paused(speak: Speak, lines: list[str], *, seed: int = 0,
           split: Callable[[str, str], tuple[np.ndarray, np.ndarray] | None] | None = None) -> list[BenchUtterance]:
    """Each ``a | b`` line with a seeded pause (``pause_for``) spliced in: spoken whole and cut at the
    boundary by ``split`` (bench/aligned_speech.py: the first half keeps the melody of a sentence going
    on), or half by half where ``split`` is None or finds no boundary."""
    out = []
    for line in lines:
        halves = [h.strip() for h in line.split("|")]
        parts = split(*halves) if split is not None else None
        if parts is None:
            log.info("paused line spoken half by half: %s", line)
            parts = [speak(h) for h in halves]
        audio, end, pauses = splice(list(parts), [pause_for(line, seed)] * (len(halves) - 1))
        out.append(BenchUtterance(" | ".join(halves), "generated", audio, reference=" ".join(halves),
                                  kind="paused", speech_end_s=end, pauses=pauses))
    return out


def short(speak: Speak, lines: list[str]) -> list[BenchUtterance]:
    return [_whole(speak, line, "short") for line in lines]


def _whole(speak: Speak, line: str, kind: str) -> BenchUtterance:
    """One line spoken as it comes (no trim); its speech end by energy."""
    audio = speak(line)
    lo, hi = speech_bounds(audio)
    return BenchUtterance(line, "generated", audio, reference=line, kind=kind,
                          speech_end_s=round(hi / RATE, 4) if hi > lo else None)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]+", " ", text.lower())).strip()
