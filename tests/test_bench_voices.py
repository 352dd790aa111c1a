"""The speaker test set's synthetic voices (companion/bench/voices.py): espeak-ng from the espeakng-loader wheel."""

from __future__ import annotations

import numpy as np
import pytest

from companion.bench.voices import VOICE_POOL, EspeakVoice, espeak_available, median_f0, speed_shift, synthesize, to_16k

pytestmark = pytest.mark.skipif(not espeak_available(),
                                reason="espeak-ng is not available: pip install espeakng-loader (the test extras)")

SENTENCE = "I have a puppy called Rex and he likes to run"


def test_a_sentence_is_speech_of_a_plausible_length():
    audio, rate = synthesize(SENTENCE, EspeakVoice())
    assert rate == 22050
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.0 <= len(audio) / rate <= 6.0
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio ** 2)) > 0.01  # not silence
    assert 70 <= median_f0(audio, rate) <= 500  # voiced speech


def test_the_same_text_and_voice_give_the_same_samples_whatever_came_between():
    voice = EspeakVoice("en-gb-scotland", "f2")  # breath noise: random, seeded
    first, _ = synthesize(SENTENCE, voice)
    synthesize("Something else entirely, in another voice.", EspeakVoice("en-us", "klatt", pitch=70))
    second, _ = synthesize(SENTENCE, voice)
    assert np.array_equal(first, second)


def test_two_pool_voices_with_different_variants_differ_in_pitch():
    deep = next(v for v in VOICE_POOL if v.variant == "m3")
    high = next(v for v in VOICE_POOL if v.variant == "f3")
    f0_deep, f0_high = (median_f0(*synthesize(SENTENCE, v)) for v in (deep, high))
    assert f0_high > 1.5 * f0_deep


def test_speed_shift_is_sox_speed_shorter_and_higher():
    audio, rate = synthesize(SENTENCE, EspeakVoice("en", "m3"))
    faster = speed_shift(audio, 1.25)
    assert faster.dtype == np.float32
    assert len(faster) == pytest.approx(len(audio) / 1.25, rel=0.01)
    assert median_f0(faster, rate) / median_f0(audio, rate) == pytest.approx(1.25, rel=0.10)


def test_to_16k_keeps_duration_and_pitch():
    audio, rate = synthesize(SENTENCE, EspeakVoice())
    down = to_16k(audio, rate)
    assert down.dtype == np.float32
    assert len(down) == pytest.approx(len(audio) * 16000 / rate, abs=2)
    assert median_f0(down, 16000) == pytest.approx(median_f0(audio, rate), rel=0.05)


@pytest.mark.parametrize("voice, words", [(EspeakVoice("xx-nope"), "refused the voice 'xx-nope'"),
                                          (EspeakVoice("en-us", "nosuchvariant"), "no voice variant 'nosuchvariant'")])
def test_an_unknown_language_or_variant_is_a_clear_error(voice, words):
    with pytest.raises(RuntimeError, match=words):
        synthesize(SENTENCE, voice)


def test_a_voice_out_of_range_is_refused_before_espeak_sees_it():
    with pytest.raises(ValueError, match="pitch"):
        EspeakVoice(pitch=150)
    with pytest.raises(ValueError, match="variant"):
        EspeakVoice("en-us+f3")


def test_the_key_names_language_variant_pitch_and_rate():
    assert EspeakVoice("en-us", "f3").key == "en-us+f3/p50/r160"
    assert EspeakVoice().key == "en-us/p50/r160"
    assert EspeakVoice("en", "m3", pitch=40, rate=150, pitch_range=30).key == "en+m3/p40/r150/g30"


def test_every_pool_voice_speaks_and_they_spread_in_pitch():
    assert 8 <= len(VOICE_POOL) <= 14
    assert len({v.key for v in VOICE_POOL}) == len(VOICE_POOL)
    f0s = []
    for voice in VOICE_POOL:
        audio, rate = synthesize(SENTENCE, voice)
        assert 1.0 <= len(audio) / rate <= 6.0, voice.key
        f0s.append(median_f0(audio, rate))
    assert all(70 <= f <= 300 for f in f0s), f0s
    ordered = sorted(f0s)
    assert min(b / a for a, b in zip(ordered, ordered[1:])) > 1.05, dict(zip((v.key for v in VOICE_POOL), f0s))
