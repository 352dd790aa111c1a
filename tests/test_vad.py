"""Streaming Silero VAD and endpointing: chunk-size invariance, silence, noise, forced cuts."""

from __future__ import annotations

import numpy as np
import pytest

from companion.audio.files import read_all
from companion.audio.frames import AudioFrame
from companion.vad.endpoint import (EndpointConfig, Endpointer, SpeechPaused, SpeechStarted, UtteranceEnded,
                                    UtteranceMaybeEnded)
from companion.vad.silero import SileroVAD
from tests.conftest import RECORDINGS, silero_path


def _events(audio: np.ndarray, chunk: int, config: EndpointConfig = EndpointConfig()):
    ep = Endpointer(SileroVAD(silero_path()), config)
    events = []
    for i in range(0, audio.size, chunk):
        events += ep.push(AudioFrame.of(audio[i:i + chunk], 16000, 50.0 + i / 16000))
    return events


def _summary(events):
    out = []
    for e in events:
        if isinstance(e, (UtteranceEnded, UtteranceMaybeEnded, SpeechPaused)):
            u = e.utterance
            kind = {UtteranceEnded: "end", UtteranceMaybeEnded: "maybe", SpeechPaused: "paused"}[type(e)]
            out.append((kind, round(u.speech_start, 4), round(u.speech_end, 4), u.audio.size, u.forced))
        else:
            out.append((type(e).__name__, round(e.t, 4)))
    return out


@pytest.fixture(scope="module")
def jfk():
    audio = read_all(RECORDINGS / "jfk.flac")
    return np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(16000, np.float32)])


def test_segmentation_does_not_depend_on_chunk_size(jfk):
    ref = _summary(_events(jfk, 320))  # 20 ms
    assert sum(1 for e in ref if e[0] == "end") >= 2
    for chunk in (160, 512, 1000):  # 10 ms, 32 ms, an odd size
        assert _summary(_events(jfk, chunk)) == ref
    # Speech begins ~0.3 s into the recording (after our 0.5 s of silence), ends ~10.9 s.
    ends = [e for e in ref if e[0] == "end"]
    assert 50.6 < ends[0][1] < 51.2 and 60.5 < ends[-1][2] < 61.2


def test_tentative_end_comes_first_and_is_confirmed_with_the_same_end(jfk):
    events = _events(jfk, 320)
    maybes = [e.utterance for e in events if isinstance(e, UtteranceMaybeEnded)]
    ends = [e.utterance for e in events if isinstance(e, UtteranceEnded)]
    confirmed = [m for m in maybes if any(m.speech_end == u.speech_end for u in ends)]
    assert len(confirmed) == len(ends)  # every real end was announced early, with the same speech end
    for m in confirmed:
        u = next(u for u in ends if u.speech_end == m.speech_end)
        assert np.array_equal(m.audio, u.audio)  # the speculative turn hears exactly what the real one would


def test_a_short_pause_is_withdrawn_and_the_utterance_goes_on(jfk):
    from companion.vad.endpoint import SpeechResumed

    speech = jfk[8000 + 128_000: 8000 + 168_000]  # "ask what you can do for your country": no pause inside
    pause = np.zeros(int(16000 * 0.1), np.float32)  # with the clip's own edges ~0.36 s: > early_end, < end_silence
    audio = np.concatenate([np.zeros(8000, np.float32), speech, pause, speech, np.zeros(16000, np.float32)])
    events = _events(audio, 320, EndpointConfig(early_end_ms=160, end_silence_ms=480))
    kinds = [type(e).__name__ for e in events if isinstance(e, (UtteranceMaybeEnded, SpeechResumed, UtteranceEnded))]
    assert "SpeechResumed" in kinds
    assert kinds.index("UtteranceMaybeEnded") < kinds.index("SpeechResumed")
    ends = [e.utterance for e in events if isinstance(e, UtteranceEnded)]
    assert len(ends) == 1 and ends[0].duration > 4.4  # one utterance holding both halves


def test_utterance_audio_keeps_pre_roll_and_all_speech(jfk):
    ends = [e.utterance for e in _events(jfk, 320) if isinstance(e, UtteranceEnded)]
    first = ends[0]
    assert first.t_audio < first.speech_start  # pre-roll
    assert abs(first.audio.size / 16000 - (first.speech_end - first.t_audio)) < 0.04


@pytest.mark.parametrize("kind", ["silence", "white-noise", "pink-ish noise"])
def test_thirty_seconds_without_speech_give_no_utterance(kind):
    rng = np.random.default_rng(1)
    n = 16000 * 30
    if kind == "silence":
        audio = np.zeros(n, np.float32)
    elif kind == "white-noise":
        audio = rng.normal(0, 0.2, n).astype(np.float32)
    else:
        audio = np.cumsum(rng.normal(0, 0.02, n)).astype(np.float32)
        audio = np.clip(audio - np.convolve(audio, np.ones(64) / 64, mode="same"), -1, 1).astype(np.float32)
    events = _events(audio, 320)
    assert not [e for e in events if isinstance(e, (SpeechStarted, UtteranceEnded))]


def test_monologue_is_cut_at_the_maximum_length(jfk):
    config = EndpointConfig(max_utterance_s=1.5, end_silence_ms=2000)
    ends = [e.utterance for e in _events(jfk, 320, config) if isinstance(e, UtteranceEnded)]
    assert any(u.forced for u in ends)
    assert all(u.audio.size / 16000 <= 1.5 + 0.35 + 0.04 for u in ends)  # max + pre-roll + a window
