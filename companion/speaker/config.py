"""Settings of speaker identification (kept apart so the typed config imports them without onnxruntime)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeakerConfig:
    """Who is talking, by voice. Used only when the parents have consented (dashboard or
    ``companion children consent on``) and at least one child is enrolled; otherwise every turn is
    ``[children] default``'s, as before."""

    #: Off: never identify, even with voiceprints stored (they stay until erased).
    enabled: bool = True
    #: Prepared speaker encoders (models/speaker-*.toml), heard together (speaker/encoder.py
    #: ``FusedEncoder``). Changing them makes the stored voiceprints unusable: enrol the children again.
    models: tuple[str, ...] = ("speaker-ge2e", "speaker-dvector")
    #: Cosine to a child's voiceprint at or above which the turn is that child's; below it for every
    #: child, the speaker is a guest. Chosen on the speaker test set's development sentences
    #: (`companion eval speakers --dev`; README: who is talking).
    threshold: float = 0.88
    #: Speech shorter than this ("yes", "a dog") is too little to tell voices apart: the turn keeps the
    #: session's last confidently identified child while the voice does not contradict it (speaker/identify.py).
    min_speech_s: float = 1.5
    #: A short utterance stays the last child's when its cosine to that child's voiceprint is at least this,
    #: and within ``keep_margin`` of the closest child's.
    keep_threshold: float = 0.75
    keep_margin: float = 0.0
    #: Where a guest's turns are kept (transcript and parent alerts only: no facts, no recall).
    guest: str = "guest"
    #: Threads for the encoder, and how much nicer than the ASR and the model its thread runs (Linux).
    threads: int = 1
    nice: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_threshold <= self.threshold < 1.0:
            raise ValueError("speakers: need 0 < keep_threshold <= threshold < 1")
        if not 0.0 <= self.keep_margin < 1.0:
            raise ValueError("speakers.keep_margin must be between 0 and 1")
        if self.min_speech_s < 0:
            raise ValueError("speakers.min_speech_s must not be negative")
        if not self.models:
            raise ValueError("speakers.models names at least one speaker encoder")
        if self.threads < 1:
            raise ValueError("speakers.threads must be at least 1")
        if not 0 <= self.nice <= 19:
            raise ValueError("speakers.nice must be between 0 and 19")
