"""The audio frame that crosses every stage boundary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The pipeline's internal rate (what Silero VAD and Whisper expect).
PIPELINE_RATE = 16_000


@dataclass(frozen=True, eq=False)
class AudioFrame:
    """A run of mono float32 samples in [-1, 1]."""

    #: Read-only 1-D float32 array.
    samples: np.ndarray
    #: Samples per second.
    rate: int
    #: Time of the first sample on the session clock (seconds, monotonic).
    t: float

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype != np.float32:
            raise ValueError("AudioFrame samples must be a 1-D float32 array")
        if self.samples.flags.writeable:
            frozen = self.samples.copy() if self.samples.base is not None else self.samples
            frozen.setflags(write=False)
            object.__setattr__(self, "samples", frozen)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    @property
    def end(self) -> float:
        return self.t + self.duration

    @staticmethod
    def of(samples: np.ndarray, rate: int, t: float) -> AudioFrame:
        return AudioFrame(np.ascontiguousarray(samples, dtype=np.float32), rate, t)

