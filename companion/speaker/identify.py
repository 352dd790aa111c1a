"""Whose voice is it: cosine of the turn's embedding to each enrolled child's voiceprint.

Pure functions: the loop keeps the session's last confident speaker and passes it in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: How a turn's speaker was decided.
BY_VOICE = "voice"      # the best voiceprint, at or above the threshold
BY_KEPT = "kept"        # too little speech: the session's last confident speaker
GUEST = "guest"         # no voiceprint close enough (or too little speech and no one before)


@dataclass(frozen=True)
class SpeakerGuess:
    """The speaker of one turn: an enrolled child's name, or None for a guest."""

    child: str | None
    #: Cosine to the chosen child's voiceprint (a guest: to the closest one); None without voiceprints.
    score: float | None
    by: str
    #: Speech the embedding was made from, seconds.
    speech_s: float = 0.0
    #: The closest voiceprint's child (whatever the threshold), for the record.
    closest: str | None = None
    #: The utterance's embedding, while the robot learns this child's voice (never in the record).
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict:
        return {"speaker": self.child, "score": None if self.score is None else round(self.score, 4),
                "by": self.by, "speech_s": round(self.speech_s, 2), "closest": self.closest}


def scores(vector: np.ndarray, prints: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Cosine of ``vector`` to each voiceprint (both unit length)."""
    return {name: float(np.dot(vector, p)) for name, p in prints.items()}


def identify(vector: np.ndarray, prints: Mapping[str, np.ndarray], *, threshold: float, speech_s: float,
             min_speech_s: float, last: str | None, keep_threshold: float, keep_margin: float) -> SpeakerGuess:
    """The speaker of one utterance (the thresholds: ``SpeakerConfig``, their one home).

    Enough speech (``min_speech_s``): the closest voiceprint at or above ``threshold``, else a guest.
    Less ("yes", "what is my pet called?": 0.4-1.5 s, where one child's and another's scores overlap,
    README): the session's ``last`` speaker is kept while the voice does not contradict it (its score at
    least ``keep_threshold``, and within ``keep_margin`` of the closest child's); a voice closer to someone
    else, or to no one, is a guest's unless it reaches ``threshold`` on its own. A sibling's short question
    is never answered from the previous child's memory just because it came next."""
    if not prints:
        return SpeakerGuess(None, None, GUEST, speech_s)
    by_child = scores(vector, prints)
    closest = max(by_child, key=by_child.get)
    if speech_s < min_speech_s and last is not None and last in by_child:
        if by_child[last] >= keep_threshold and by_child[last] >= by_child[closest] - keep_margin:
            return SpeakerGuess(last, by_child[last], BY_KEPT, speech_s, closest)
    if by_child[closest] >= threshold:
        return SpeakerGuess(closest, by_child[closest], BY_VOICE, speech_s, closest)
    return SpeakerGuess(None, by_child[closest], GUEST, speech_s, closest)


def voiceprint(vectors: list[np.ndarray]) -> np.ndarray:
    """A child's voiceprint: the normalised mean of their utterances' unit vectors."""
    if not vectors:
        raise ValueError("no utterances to make a voiceprint from")
    mean = np.mean(np.stack(vectors), axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
