"""Telling the robot's own voice (coming back through the microphone) from a child's.

The player knows exactly what it played and when. If the microphone signal since a
speech onset is, up to a short delay and a gain, that same signal, it is echo:
normalised cross-correlation close to 1. A child talking over it lowers the
correlation. After the robot stops, a transcript that repeats the robot's last
words within a short tail is its echo too.
"""

from __future__ import annotations

import re

import numpy as np

from companion.audio.frames import PIPELINE_RATE
from companion.audio.sinks import Player


def echo_similarity(mic: np.ndarray, t_mic: float, player: Player, *, max_delay_s: float = 0.25) -> float:
    """Peak normalised cross-correlation between ``mic`` (starting at ``t_mic``) and recent playback."""
    if mic.size < 256:
        return 0.0
    start = t_mic - max_delay_s
    n_ref = mic.size + int(max_delay_s * PIPELINE_RATE)
    ref = np.zeros(n_ref, dtype=np.float64)
    for block in player.recent(start):
        offset = int(round((block.t - start) * PIPELINE_RATE))
        lo, hi = max(0, offset), min(n_ref, offset + block.samples16k.size)
        if hi > lo:
            ref[lo:hi] = block.samples16k[lo - offset:hi - offset]
    if not np.any(ref):
        return 0.0
    m = mic.astype(np.float64) - mic.mean()
    m_norm = np.sqrt(np.dot(m, m))
    if m_norm < 1e-6:
        return 0.0
    corr = np.correlate(ref, m, mode="valid")  # one value per candidate delay
    sq = np.concatenate([[0.0], np.cumsum(ref * ref)])
    energy = np.sqrt(sq[m.size:] - sq[:-m.size])
    with np.errstate(divide="ignore", invalid="ignore"):
        ncc = np.where(energy > 1e-6, corr / (energy * m_norm), 0.0)
    return float(np.max(np.abs(ncc))) if ncc.size else 0.0


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def repeats_robot(transcript: str, robot_said: str) -> bool:
    """True when the transcript is (almost all) words the robot just said, in order."""
    heard, said = _words(transcript), _words(robot_said)
    if len(heard) < 2 or not said:
        return False
    # Longest common subsequence of words, heard vs said.
    prev = [0] * (len(said) + 1)
    for w in heard:
        cur = [0]
        for j, s in enumerate(said):
            cur.append(prev[j] + 1 if w == s else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1] / len(heard) >= 0.8
