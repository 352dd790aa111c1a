import numpy as np
import pytest

from companion.llm.sampling import SamplingParams, apply_repetition_penalty, sample


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_greedy_picks_argmax():
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    assert sample(logits, SamplingParams(temperature=0.0, repetition_penalty=1.0), [], _rng()) == 1


def test_top_k_one_and_tiny_top_p_are_greedy():
    logits = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    best = int(np.argmax(logits))
    for params in (SamplingParams(temperature=1.0, top_k=1, repetition_penalty=1.0),
                   SamplingParams(temperature=1.0, top_p=1e-6, top_k=0, repetition_penalty=1.0)):
        assert {sample(logits, params, [], _rng(s)) for s in range(20)} == {best}


def test_top_p_only_samples_from_the_nucleus():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float64)).astype(np.float32)
    params = SamplingParams(temperature=1.0, top_p=0.7, top_k=0, repetition_penalty=1.0)
    picks = {sample(logits, params, [], _rng(s)) for s in range(200)}
    assert picks == {0, 1}


def test_repetition_penalty_lowers_seen_tokens():
    logits = np.array([2.0, -2.0, 1.0], dtype=np.float32)
    out = apply_repetition_penalty(logits, [0, 1], 2.0)
    assert out[0] == pytest.approx(1.0) and out[1] == pytest.approx(-4.0) and out[2] == pytest.approx(1.0)
    assert logits[0] == 2.0  # the input is not modified
    assert sample(logits, SamplingParams(temperature=0.0, repetition_penalty=3.0), [0], _rng()) == 2


def test_seed_makes_sampling_reproducible():
    logits = np.random.default_rng(2).normal(size=500).astype(np.float32)
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    a = [sample(logits, params, [], _rng(7)) for _ in range(1)]
    rng1, rng2 = _rng(7), _rng(7)
    seq1 = [sample(logits, params, [], rng1) for _ in range(30)]
    seq2 = [sample(logits, params, [], rng2) for _ in range(30)]
    assert seq1 == seq2 and a[0] == seq1[0]
    assert len(set(seq1)) > 1


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0), dict(top_k=-1),
                                 dict(repetition_penalty=0), dict(ask_within=-1)])
def test_invalid_params_are_rejected(bad):
    with pytest.raises(ValueError):
        SamplingParams(**bad)


def test_no_ngram_of_the_last_replies_is_said_again():
    from companion.llm.sampling import banned_next, sample

    earlier = [[5, 6, 7, 8, 9]]
    assert banned_next([1, 5, 6, 7, 8], earlier, 5) == {9}  # "5 6 7 8" was followed by 9 last turn
    assert banned_next([1, 5, 6, 7], earlier, 5) == set()  # only a 4-gram so far: nothing to complete
    assert banned_next([3, 4, 3, 4, 3, 4, 3], [], 5) == {4}  # a loop inside the reply itself
    assert banned_next([1, 5, 6, 7, 8], earlier, 0) == set()
    logits = np.zeros(20, dtype=np.float32)
    logits[9] = 10.0  # the model's favourite continuation is the repeat
    greedy = SamplingParams(temperature=0, no_repeat_ngram=5)
    rng = np.random.default_rng(0)
    assert sample(logits, greedy, [1, 5, 6, 7, 8], rng, earlier) != 9
    assert sample(logits, greedy, [1, 5, 6, 7, 8], rng, ()) == 9


def test_forbidden_tokens_are_never_drawn():
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    greedy = SamplingParams(temperature=0.0, repetition_penalty=1.0)
    assert sample(logits, greedy, [], _rng(), forbid={1}) == 2
    drawn = {sample(logits, SamplingParams(temperature=1.0, top_k=0, top_p=1.0), [], _rng(s), forbid={1, 2})
             for s in range(50)}
    assert drawn <= {0, 3} and drawn
