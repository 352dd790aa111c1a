"""Endpointing: turning per-window speech probabilities into onsets and finished utterances.

All times come from sample counts on the stream (first frame's ``t`` plus
samples / rate), and decisions are made per 32 ms VAD window, so the events are
the same whatever chunk size the audio arrives in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from companion.audio.frames import PIPELINE_RATE, AudioFrame
from companion.vad.silero import WINDOW, SileroVAD

WINDOW_S = WINDOW / PIPELINE_RATE


@dataclass(frozen=True)
class EndpointConfig:
    """Endpointing settings (times in milliseconds unless named _s)."""

    #: Prepared VAD model (the Silero file faster-whisper ships).
    model: str = "silero-vad-v6"
    #: Speech probability at or above which a window is speech.
    threshold: float = 0.5
    #: Probability below which a window counts as silence while in speech (hysteresis).
    neg_threshold: float = 0.35
    #: Speech this long makes a tentative onset (used to pause the robot's voice at once).
    onset_ms: int = 64
    #: Speech this long confirms an utterance has started.
    min_speech_ms: int = 250
    #: Before speech is confirmed, a pause this long drops the candidate (shorter dips are syllable gaps).
    onset_gap_ms: int = 320
    #: The longest a candidate (sound that may be speech, not yet confirmed) is kept. A child speaking
    #: softly scores between ``neg_threshold`` and ``threshold`` much of the time, with a voiced window
    #: every few syllables; so ``min_speech_ms`` of voiced windows are looked for in the last this-many
    #: ms of it (a sliding window), not from its first window on. 3 s hold the first words of a soft
    #: sentence while they gather that much voicing (one voiced window in eleven is enough); a murmur
    #: that stays between the thresholds for longer without it (a fan, a television next door) is not
    #: held: windows older than this leave the candidate for the pre-roll, and a candidate with no
    #: voiced window left ends. Never more than ``max_utterance_s`` less the pre-roll.
    max_candidate_ms: int = 3000
    #: Silence this long after speech ends the utterance.
    end_silence_ms: int = 480
    #: Silence this long makes a tentative end (``UtteranceMaybeEnded``): the loop starts
    #: transcribing and answering while it waits for ``end_silence_ms``, and drops that work
    #: if the child goes on (``SpeechResumed``). 0 turns it off.
    early_end_ms: int = 96
    #: Silence this long makes a ``SpeechPaused``: the end-of-turn model starts hearing the pause ahead
    #: of the speculative turn, so that its call and the ASR's do not share the cores. 0 (or not below
    #: ``early_end_ms``): the pause is heard at the tentative end.
    pause_ms: int = 64
    #: Audio kept from before the onset, so the first syllable is not clipped.
    pre_roll_ms: int = 320
    #: An utterance longer than this is cut and handed on (a monologue never grows memory unbounded).
    max_utterance_s: float = 20.0

    def windows(self, ms: float) -> int:
        return max(1, int(round(ms / 1000 / WINDOW_S)))


@dataclass(frozen=True)
class SpeechOnset:
    """Speech may have started (tentative; ``confirmed`` events follow for real speech)."""

    t: float


@dataclass(frozen=True)
class SpeechStarted:
    """Speech confirmed (min_speech_ms of it); ``t`` is when it began."""

    t: float


@dataclass(frozen=True)
class SpeechRejected:
    """A tentative onset that did not become speech (a click, a cough)."""

    t: float


@dataclass(frozen=True, eq=False)
class Utterance:
    """What the child said, as 16 kHz audio with pre-roll."""

    audio: np.ndarray
    #: Time of audio[0] on the session clock.
    t_audio: float
    speech_start: float
    #: End of the last window that was speech.
    speech_end: float
    #: True when cut at max_utterance_s rather than ended by silence.
    forced: bool = False

    @property
    def duration(self) -> float:
        return self.speech_end - self.speech_start


@dataclass(frozen=True)
class UtteranceEnded:
    utterance: Utterance


@dataclass(frozen=True, eq=False)
class UtteranceMaybeEnded:
    """``early_end_ms`` of silence after speech: probably the end. Confirmed by ``UtteranceEnded``
    with the same ``speech_end``, or withdrawn by ``SpeechResumed``.

    ``tail`` is the silence heard since ``speech_end`` (the end-of-turn model hears the pause too)."""

    utterance: Utterance
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


@dataclass(frozen=True, eq=False)
class SpeechPaused:
    """``pause_ms`` of silence after speech (before ``UtteranceMaybeEnded``): the utterance so far and the
    silence since, for the end-of-turn model. Withdrawn by ``SpeechResumed``."""

    utterance: Utterance
    tail: np.ndarray


@dataclass(frozen=True)
class SpeechResumed:
    """Speech again after a ``SpeechPaused`` or an ``UtteranceMaybeEnded``: the same utterance goes on."""

    t: float


EndpointEvent = (SpeechOnset | SpeechStarted | SpeechRejected | SpeechPaused | UtteranceMaybeEnded | SpeechResumed
                 | UtteranceEnded)


class Endpointer:
    """Feeds frames to the VAD and emits endpoint events; one per audio stream."""

    def __init__(self, vad: SileroVAD, config: EndpointConfig = EndpointConfig()) -> None:
        self._vad = vad
        self.config = config
        self._onset_n = config.windows(config.onset_ms)
        self._min_n = max(self._onset_n, config.windows(config.min_speech_ms))
        self._end_n = config.windows(config.end_silence_ms)
        self._early_n = config.windows(config.early_end_ms) if 0 < config.early_end_ms < config.end_silence_ms else 0
        self._pause_n = config.windows(config.pause_ms) if self._early_n and 0 < config.pause_ms < config.early_end_ms \
            else 0
        self._gap_n = config.windows(config.onset_gap_ms)
        self._max_n = max(self._min_n + 1, int(config.max_utterance_s / WINDOW_S))
        self._pre_roll: deque[np.ndarray] = deque(maxlen=config.windows(config.pre_roll_ms))
        # The candidate plus its pre-roll must fit an utterance, so that a confirmed start is never over-long.
        self._candidate_n = max(self._min_n, min(config.windows(config.max_candidate_ms),
                                                 self._max_n - 1 - self._pre_roll.maxlen))
        self._t0: float | None = None
        self._window_index = 0  # index of the next window the VAD will score
        self._pending = np.zeros(0, dtype=np.float32)
        self._reset_run()

    def _reset_run(self) -> None:
        self._in_speech = False
        #: Windows of the candidate and whether each was voiced; bounded by ``_candidate_n`` (``_trim_candidate``).
        self._candidate: deque[tuple[np.ndarray, bool]] = deque()
        self._candidate_start = 0
        self._candidate_gap = 0
        self._voiced = 0
        self._onset_sent = False
        self._onset_start = 0
        self._speech: list[np.ndarray] = []
        self._speech_start = 0
        self._audio_start = 0
        self._silence_run = 0
        self._last_voiced = 0
        self._maybe_sent = False
        self._pause_sent = False
        #: Silence (in windows) that ends the current pause, set by the end-of-turn decision; None: ``_end_n``.
        self._end_override_n: int | None = None

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def pause_since(self) -> float | None:
        """``speech_end`` of the pause in progress (after an ``UtteranceMaybeEnded``), else None."""
        if not (self._in_speech and (self._maybe_sent or self._pause_sent)):
            return None
        return self._time(self._last_voiced + 1)

    def set_end_silence(self, ms: int, *, speech_end: float) -> bool:
        """End the pause that began at ``speech_end`` after ``ms`` of silence instead of ``end_silence_ms``
        (the end-of-turn decision). Ignored, returning False, when that pause is over: the child went
        on, or the utterance has ended."""
        since = self.pause_since
        if since is None or abs(since - speech_end) > 1e-6:
            return False
        self._end_override_n = self.config.windows(ms)
        return True

    def _time(self, window_index: int) -> float:
        assert self._t0 is not None
        return self._t0 + window_index * WINDOW_S

    def push(self, frame: AudioFrame) -> list[EndpointEvent]:
        if frame.rate != PIPELINE_RATE:
            raise ValueError(f"endpointer needs {PIPELINE_RATE} Hz audio, got {frame.rate}")
        if self._t0 is None:
            self._t0 = frame.t
        events: list[EndpointEvent] = []
        buf = np.concatenate([self._pending, frame.samples])
        n = buf.size // WINDOW
        self._pending = buf[n * WINDOW:].copy()
        probs = self._vad.push(buf[: n * WINDOW]) if n else []
        for i, prob in enumerate(probs):
            self._step(buf[i * WINDOW:(i + 1) * WINDOW], prob, events)
            self._window_index += 1
        return events

    def _step(self, window: np.ndarray, prob: float, events: list[EndpointEvent]) -> None:
        idx = self._window_index
        c = self.config
        if not self._in_speech:
            if prob >= c.threshold or (self._candidate and prob >= c.neg_threshold):
                if not self._candidate:
                    self._candidate_start = idx
                    self._voiced = 0
                voiced = prob >= c.threshold
                self._candidate.append((window, voiced))
                self._candidate_gap = 0
                self._voiced += voiced
                if not self._trim_candidate(events):
                    return
                if self._voiced >= self._onset_n and not self._onset_sent:
                    self._onset_sent = True
                    self._onset_start = self._candidate_start
                    events.append(SpeechOnset(self._time(self._candidate_start)))
                if self._voiced >= self._min_n:
                    self._in_speech = True
                    self._speech_start = self._candidate_start
                    pre_roll = list(self._pre_roll)[max(0, len(self._pre_roll) + len(self._candidate)
                                                        - (self._max_n - 1)):]
                    self._audio_start = self._candidate_start - len(pre_roll)
                    self._speech = [*pre_roll, *(w for w, _ in self._candidate)]
                    self._pre_roll.clear()
                    self._candidate.clear()
                    self._last_voiced = idx
                    events.append(SpeechStarted(self._time(self._speech_start)))
                return
            if self._candidate:
                # Short dips between syllables do not end a candidate; a real pause does.
                self._candidate.append((window, False))
                self._candidate_gap += 1
                if not self._trim_candidate(events) or self._candidate_gap < self._gap_n:
                    return
                self._drop_candidate(events)
                return
            self._pre_roll.append(window)
            return
        # In speech.
        self._speech.append(window)
        if prob < c.neg_threshold:
            self._silence_run += 1
        else:
            self._silence_run = 0
            if prob >= c.threshold:
                self._last_voiced = idx
                if self._maybe_sent or self._pause_sent:
                    self._maybe_sent = self._pause_sent = False
                    self._end_override_n = None
                    events.append(SpeechResumed(self._time(idx)))
        if self._pause_n and self._silence_run == self._pause_n and not (self._pause_sent or self._maybe_sent):
            self._pause_sent = True
            events.append(SpeechPaused(self._snapshot(), self._tail()))
        if self._early_n and self._silence_run == self._early_n and not self._maybe_sent:
            self._maybe_sent = True
            events.append(UtteranceMaybeEnded(self._snapshot(), self._tail()))
        if self._silence_run >= (self._end_override_n or self._end_n):
            events.append(self._finish(forced=False))
        elif len(self._speech) >= self._max_n:
            events.append(self._finish(forced=True))
            # The child is still talking: the next piece starts right here.
            self._in_speech = True
            self._speech_start = self._audio_start = idx + 1
            self._last_voiced = idx + 1
            self._onset_sent = True

    def _tail(self) -> np.ndarray:
        """The silence heard since the last voiced window."""
        after = self._speech[self._last_voiced + 1 - self._audio_start:]
        return np.concatenate(after) if after else np.zeros(0, dtype=np.float32)

    def _trim_candidate(self, events: list[EndpointEvent]) -> bool:
        """Keep the candidate within ``_candidate_n`` windows, starting at a voiced one; False if none is left.

        Windows that leave it go to the pre-roll. An onset whose voiced windows have all but left is
        withdrawn (``SpeechRejected``) so that each ``SpeechOnset`` is followed by a start or a rejection.
        """
        if len(self._candidate) <= self._candidate_n:
            return True
        window, voiced = self._candidate.popleft()
        self._pre_roll.append(window)
        self._voiced -= voiced
        self._candidate_start += 1
        while self._candidate and not self._candidate[0][1]:
            self._pre_roll.append(self._candidate.popleft()[0])
            self._candidate_start += 1
        if not self._candidate:
            self._drop_candidate(events)
            return False
        if self._onset_sent and self._voiced < self._onset_n:
            events.append(SpeechRejected(self._time(self._onset_start)))
            self._onset_sent = False
        return True

    def _drop_candidate(self, events: list[EndpointEvent]) -> None:
        if self._onset_sent:
            events.append(SpeechRejected(self._time(self._onset_start)))
        self._pre_roll.extend(w for w, _ in self._candidate)
        self._candidate.clear()
        self._candidate_gap = 0
        self._voiced = 0
        self._onset_sent = False

    def _snapshot(self, *, forced: bool = False) -> Utterance:
        end_index = (self._window_index + 1) if forced else (self._last_voiced + 1)
        audio = np.concatenate(self._speech)
        keep = (end_index - self._audio_start) * WINDOW if not forced else audio.size
        return Utterance(audio=audio[:keep], t_audio=self._time(self._audio_start),
                         speech_start=self._time(self._speech_start), speech_end=self._time(end_index), forced=forced)

    def _finish(self, *, forced: bool) -> UtteranceEnded:
        utt = self._snapshot(forced=forced)
        trailing = self._speech[-self._pre_roll.maxlen:] if not forced and self._pre_roll.maxlen else []
        self._reset_run()
        self._pre_roll.extend(trailing)
        return UtteranceEnded(utt)
