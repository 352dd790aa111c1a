"""The endpointer's buffers stay bounded whatever the VAD says (a scripted VAD, no model).

Speech probability hovering between ``neg_threshold`` and ``threshold`` keeps a candidate alive
without ever confirming it; the candidate must not grow with it, and no utterance may come out
longer than ``max_utterance_s``.
"""

from __future__ import annotations

import numpy as np
import pytest

from companion.audio.frames import PIPELINE_RATE, AudioFrame
from companion.vad.endpoint import (
    WINDOW_S,
    EndpointConfig,
    Endpointer,
    SpeechOnset,
    SpeechRejected,
    SpeechStarted,
    UtteranceEnded,
    UtteranceMaybeEnded,
)
from companion.vad.silero import WINDOW

#: Every sample of window i is i / SCALE, so an utterance's audio says which windows it holds.
SCALE = 4096.0
HOVER = 0.42  # between the default neg_threshold (0.35) and threshold (0.5)


class ScriptedVAD:
    """Stands in for ``SileroVAD``: the probability of the i-th 512-sample window is ``probs[i]`` (0 after)."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs
        self.windows = 0
        self._pending = 0

    def reset(self) -> None:
        self.windows = 0
        self._pending = 0

    def push(self, samples: np.ndarray) -> list[float]:
        self._pending += samples.size
        n, self._pending = divmod(self._pending, WINDOW)
        out = [float(self.probs[i]) if i < self.probs.size else 0.0 for i in range(self.windows, self.windows + n)]
        self.windows += n
        return out


def _script(*segments: tuple[float, float | str]) -> np.ndarray:
    """Probabilities from (seconds, probability) segments. Between the thresholds with some voiced windows:
    "sparse:k", one voiced window in k; "pairs:k", two voiced windows in a row every k."""
    parts = []
    for seconds, p in segments:
        n = int(round(seconds / WINDOW_S))
        seg = np.full(n, HOVER if isinstance(p, str) else p)
        if isinstance(p, str):
            kind, every = p.split(":")
            seg[::int(every)] = 0.55
            if kind == "pairs":
                seg[1::int(every)] = 0.55
        parts.append(seg)
    return np.concatenate(parts)


def _run(probs: np.ndarray, config: EndpointConfig = EndpointConfig(), chunk: int = 320):
    """Stream the windows' audio in ``chunk``-sample frames; the events and the largest candidate seen."""
    ep = Endpointer(ScriptedVAD(probs), config)
    audio = np.repeat(np.arange(probs.size + 40, dtype=np.float32) / SCALE, WINDOW)
    events, largest = [], 0
    for i in range(0, audio.size, chunk):
        events += ep.push(AudioFrame.of(audio[i:i + chunk], PIPELINE_RATE, i / PIPELINE_RATE))
        largest = max(largest, len(ep._candidate))
    return events, largest


def _utterances(events, kind=UtteranceEnded):
    return [e.utterance for e in events if isinstance(e, kind)]


def _check_onsets_pair_up(events) -> None:
    """Each SpeechOnset is followed by exactly one SpeechStarted or SpeechRejected before the next onset."""
    open_onset = False
    for e in events:
        if isinstance(e, SpeechOnset):
            assert not open_onset, "two onsets without a start or rejection between them"
            open_onset = True
        elif isinstance(e, (SpeechStarted, SpeechRejected)):
            assert open_onset or isinstance(e, SpeechStarted), "a rejection without an onset"
            open_onset = False


def _check_audio_matches_its_times(utt) -> None:
    """The utterance's audio is exactly the windows from t_audio on, in order."""
    first = int(round(utt.t_audio / WINDOW_S))
    windows = utt.audio[::WINDOW] * SCALE
    assert np.array_equal(windows, np.arange(first, first + windows.size, dtype=np.float32))


@pytest.mark.parametrize("hover", [HOVER, "pairs:125", "sparse:47"], ids=["steady", "voiced-pairs", "sparse-voiced"])
def test_a_candidate_hovering_between_the_thresholds_stays_bounded(hover):
    config = EndpointConfig()
    bound = config.windows(config.max_candidate_ms)
    # One voiced window starts a candidate; then 60 s between the thresholds, never min_speech_ms of voiced
    # windows within max_candidate_ms: steady; with two voiced windows every 4 s (an onset each time, withdrawn
    # when they have left the candidate); with a voiced window every 1.5 s (the candidate never ends, its
    # onset stays open). Then real speech.
    probs = _script((WINDOW_S, 0.6), (60.0, hover), (1.0, 0.9), (1.0, 0.05))
    events, largest = _run(probs, config)

    assert largest <= bound  # never more than max_candidate_ms of audio waiting for a decision
    assert bound * WINDOW_S <= config.max_candidate_ms / 1000 + WINDOW_S
    _check_onsets_pair_up(events)
    if hover == "pairs:125":
        onsets = sum(isinstance(e, SpeechOnset) for e in events)
        assert onsets >= 10 and sum(isinstance(e, SpeechRejected) for e in events) == onsets - 1
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(started) == 1  # the hovering never became speech...
    real = 60.0 + WINDOW_S
    assert real - config.max_candidate_ms / 1000 <= started[0].t <= real + 0.3  # ...the real onset did
    (utt,) = _utterances(events)
    assert utt.speech_end == pytest.approx(real + 1.0, abs=2 * WINDOW_S) and not utt.forced
    assert utt.audio.size / PIPELINE_RATE <= (bound + config.windows(config.pre_roll_ms)) * WINDOW_S + 1.0 + 0.1
    _check_audio_matches_its_times(utt)


@pytest.mark.parametrize("config", [EndpointConfig(), EndpointConfig(max_utterance_s=1.0),
                                    EndpointConfig(max_utterance_s=2.0, max_candidate_ms=10_000)],
                         ids=["default", "1s", "2s-long-candidate"])
def test_an_utterance_never_exceeds_max_utterance_s(config):
    # 30 s hovering after one voiced window, then 45 s of speech, 25 s hovering inside speech, silence.
    probs = _script((WINDOW_S, 0.6), (30.0, HOVER), (45.0, 0.9), (25.0, HOVER), (2.0, 0.05),
                    (5.0, "sparse:6"), (1.0, 0.05))
    events, largest = _run(probs, config)
    utterances = _utterances(events)
    assert len(utterances) >= 3 and any(u.forced for u in utterances)
    for utt in utterances + _utterances(events, UtteranceMaybeEnded):
        assert utt.audio.size / PIPELINE_RATE <= config.max_utterance_s + 1e-9
        assert utt.duration <= config.max_utterance_s + 1e-9
        _check_audio_matches_its_times(utt)
    _check_onsets_pair_up(events)


def test_soft_speech_with_sparse_voicing_is_still_heard():
    """A child speaking softly: mostly between the thresholds, a voiced window every sixth (~190 ms)."""
    probs = _script((1.0, 0.05), (2.5, "sparse:6"), (1.0, 0.05))
    events, _ = _run(probs)
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(started) == 1 and started[0].t == pytest.approx(1.0, abs=WINDOW_S)
    (utt,) = _utterances(events)
    assert utt.speech_start == pytest.approx(1.0, abs=WINDOW_S) and not utt.forced
    _check_audio_matches_its_times(utt)


@pytest.mark.parametrize("chunk", [160, 512, 1000])
def test_bounded_candidate_events_do_not_depend_on_chunk_size(chunk):
    probs = _script((WINDOW_S, 0.6), (10.0, "sparse:40"), (1.0, 0.9), (1.0, 0.05))

    def summary(events):
        return [(type(e).__name__, round(e.utterance.speech_start if hasattr(e, "utterance") else e.t, 4))
                for e in events]

    assert summary(_run(probs, chunk=chunk)[0]) == summary(_run(probs)[0])
