"""Enrolment: a child's voiceprint from a few sentences of their speech, with the parents' consent.

Used by ``companion children enroll`` and the parents' dashboard. Nothing of the audio is kept:
only the averaged 256-number vector, in the memory database on the robot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from companion.errors import CompanionError
from companion.memory.store import MemoryStore
from companion.parent import settings as parent_settings
from companion.speaker.encoder import SpeakerEncoder
from companion.speaker.identify import voiceprint

#: Less speech than this makes a voiceprint too unsure to be worth storing.
MIN_SPEECH_S = 8.0
#: What the robot asks for (about 20 s): below it enrolment works, with a note to add more.
GOOD_SPEECH_S = 20.0

SPEAKER_CONSENT_MISSING = "SPEAKER_CONSENT_MISSING"
SPEAKER_TOO_LITTLE_SPEECH = "SPEAKER_TOO_LITTLE_SPEECH"


class SpeakerError(CompanionError):
    code = "SPEAKER_ERROR"


@dataclass(frozen=True)
class Enrolment:
    child: str
    model: str
    utterances: int
    speech_s: float
    #: Cosine of each utterance to the voiceprint made from all of them (low: another voice or noise).
    agreement: tuple[float, ...]

    @property
    def note(self) -> str:
        notes = []
        if self.speech_s < GOOD_SPEECH_S:
            notes.append(f"only {self.speech_s:.0f} s of speech; about {GOOD_SPEECH_S:.0f} s recognises the "
                         f"child better")
        odd = [i + 1 for i, a in enumerate(self.agreement) if a < 0.6]
        if odd:
            notes.append(f"recording(s) {odd} sound unlike the others (another voice, or noise?)")
        return "; ".join(notes)


def require_consent(store: MemoryStore) -> None:
    if not parent_settings.load(store).voice_id:
        raise SpeakerError("recognising children by voice needs the parents' consent first (dashboard, or "
                           "`companion children consent on`): a voiceprint is biometric data about a child",
                           code=SPEAKER_CONSENT_MISSING)


def consented_voiceprints(store: MemoryStore, model: str) -> dict[str, np.ndarray]:
    """The voiceprints made by encoder ``model``, or none at all without the parents' consent."""
    if not parent_settings.load(store).voice_id:
        return {}
    return store.voiceprints(model)


def store_voiceprint(store: MemoryStore, child: str, model: str, vectors: list[np.ndarray],
                     speech_s: float) -> np.ndarray:
    """Store ``child``'s voiceprint from their utterances' vectors (consent checked again: it may have been
    withdrawn while the robot listened). The parents named the child: once the robot knows the voice, it
    knows whom it is talking to, so the name becomes a fact when none is known."""
    require_consent(store)
    vector = voiceprint(vectors)
    store.put_voiceprint(child, model, vector, utterances=len(vectors), speech_s=speech_s)
    if not any(f.kind == "name" for f in store.facts(child)):
        store.add_fact(child, "name", child, None)
    return vector


def enrol(store: MemoryStore, encoder: SpeakerEncoder, child: str, recordings: list[np.ndarray]) -> Enrolment:
    """Make and store ``child``'s voiceprint from ``recordings`` (16 kHz mono, a few sentences each)."""
    require_consent(store)
    vectors, speech = [], 0.0
    for audio in recordings:
        try:
            emb = encoder.embed(audio)
        except ValueError:  # a silent recording: nothing to learn from it
            continue
        vectors.append(emb.vector)
        speech += emb.speech_s
    if speech < MIN_SPEECH_S:
        raise SpeakerError(f"{speech:.1f} s of speech is too little to know {child}'s voice; record at least "
                           f"{MIN_SPEECH_S:.0f} s (about {GOOD_SPEECH_S:.0f} s is best)", code=SPEAKER_TOO_LITTLE_SPEECH)
    vector = store_voiceprint(store, child, encoder.name, vectors, speech)
    return Enrolment(child, encoder.name, len(vectors), round(speech, 1),
                     tuple(round(float(v @ vector), 3) for v in vectors))
