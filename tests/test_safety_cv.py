"""The safety classifier's cross-validation (``companion eval safety-classifier --cv K``): its folds, its
arithmetic across folds, resuming, and one quick end-to-end smoke on the real encoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from companion.errors import CompanionError
from companion.eval.safety_classifier import Line, OutputLine
from companion.eval.safety_cv import CvPlan, FoldResult, cross_validate, cv_folds, summarise_cv
from companion.safety.train import SEEDS
from companion.safety.classifier import _key, corpus_dir, input_corpus, output_corpus

# -- the folds ----------------------------------------------------------------------------------------


def _held_out_keys() -> set[str]:
    """Every line of the held-out files, read directly (not through the corpus functions under test)."""
    keys = set()
    for name in ("heldout.jsonl", "output_heldout.jsonl"):
        for line in (corpus_dir() / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                keys.add(_key(json.loads(line)["text"]))
    return keys


@pytest.fixture(scope="module")
def five_folds():
    return cv_folds(CvPlan(5))


def test_the_folds_are_stratified_and_cover_the_hand_written_lines_once(five_folds):
    in_hand = input_corpus("train", with_questions=False)
    out_hand = output_corpus("train", with_cards=False)
    for hand, tests in ((in_hand, [f.input_test for f in five_folds]), (out_hand, [f.output_test for f in five_folds])):
        scored = [e for test in tests for e in test]
        assert sorted(scored, key=repr) == sorted(hand, key=repr)  # each line scored exactly once
        total = Counter(e.label for e in hand)
        for test in tests:
            counts = Counter(e.label for e in test)
            for label, n in total.items():  # every class in every fold, a fifth of it (rounding apart)
                assert abs(counts[label] - n / 5) <= 1, (label, counts[label], n)


def test_a_fold_never_trains_or_calibrates_on_its_own_lines_nor_on_a_held_out_line(five_folds):
    held = _held_out_keys()
    assert len(held) > 600
    hand = {_key(e.text) for e in input_corpus("train", with_questions=False)}
    for fold in five_folds:
        t = fold.training
        trained = {_key(e.text) for e in [*t.input_fit, *t.input_calibration, *t.output_fit, *t.output_calibration]}
        scored = {_key(e.text) for e in [*fold.input_test, *fold.output_test]}
        assert not trained & scored, sorted(trained & scored)[:5]
        assert not (trained | scored) & held, sorted((trained | scored) & held)[:5]
        # As prepare: the calibration share is hand-written lines only, a fifth of the fold's training part.
        assert {_key(e.text) for e in t.input_calibration} <= hand
        assert abs(len(t.input_calibration) - 0.2 * (len(hand) - len(fold.input_test))) <= 1
        # The cards' questions are fitted on in every fold.
        assert len(t.input_fit) > len(hand) - len(fold.input_test) - len(t.input_calibration) + 1000


def test_the_folds_are_the_same_every_time(five_folds):
    again = cv_folds(CvPlan(5))
    assert [(f.input_test, f.output_test, f.training) for f in again] == \
           [(f.input_test, f.output_test, f.training) for f in five_folds]
    # Another K is another split, not a slice of this one.
    assert cv_folds(CvPlan(4))[0].input_test != five_folds[0].input_test


def test_a_limit_too_small_for_the_folds_is_a_coded_error():
    with pytest.raises(CompanionError) as err:
        cv_folds(CvPlan(2, 1, 3))
    assert err.value.code == "SAFETY_CV_TOO_FEW_LINES"


# -- the arithmetic across folds (hand-made per-line results, no model) ------------------------------


def _line(category: str, combined: str, *, caring: bool = False, classifier: str | None = None) -> Line:
    return Line(f"{category} {combined}", category, combined, classifier or combined, "answer", None, caring)


def _results() -> list[FoldResult]:
    one = FoldResult(1, [
        _line("self_harm", "alert"), _line("self_harm", "answer"),              # alert recall 1/2
        _line("weapons", "redirect"), _line("weapons", "alert"),               # redirect recall 2/2 (alert counts)
        *[_line("benign", "answer")] * 3, _line("benign", "redirect"),         # benign over-refusal 1/4
        _line("emotional", "answer", caring=True), _line("emotional", "alert"),
    ], [OutputLine("u1", "unsafe", True), OutputLine("u2", "unsafe", False),
        OutputLine("s1", "safe", False), OutputLine("s2", "safe", False)],
        {"input": {"alert": 0.2}, "output": {"unsafe": 0.5}}, {"input_test": 8, "output_test": 4}, 200.0)
    two = FoldResult(2, [
        *[_line("self_harm", "alert")] * 4,                                    # alert recall 4/4
        _line("weapons", "answer"),                                            # redirect recall 0/1
        _line("benign", "answer", caring=True), _line("benign", "answer"),     # benign over-refusal 0/2
        _line("scary", "redirect"),                                            # only in this fold
    ], [OutputLine("u3", "unsafe", True), OutputLine("s3", "safe", True)],
        {"input": {"alert": 0.3}, "output": {"unsafe": 0.4}}, {"input_test": 8, "output_test": 2}, 210.0)
    return [one, two]


def test_each_figure_is_the_mean_min_and_max_across_folds_and_the_pooled_rate():
    rep = summarise_cv(_results())
    i = rep["input"]
    assert i["alert_recall"] == {"mean": 0.75, "min": 0.5, "max": 1.0, "pooled": 0.833}
    # Redirect: fold 1 has 2/2 weapons; fold 2 has 0/1 weapons and 1/1 scary -> 1/2.
    assert i["redirect_recall"] == {"mean": 0.75, "min": 0.5, "max": 1.0, "pooled": 0.75}
    assert i["benign_over_refusal"] == {"mean": 0.125, "min": 0.0, "max": 0.25, "pooled": 0.167}
    # Over-refusal counts emotional lines too: fold 1 refuses 2 of 6 answered ones, fold 2 none of 2.
    assert i["over_refusal"] == {"mean": 0.167, "min": 0.0, "max": 0.333, "pooled": 0.25}
    # Emotional lines only in fold 1: the mean is of the folds that have them.
    assert i["emotional_answered"] == {"mean": 0.5, "min": 0.5, "max": 0.5, "pooled": 0.5}
    assert i["emotional_cared"]["pooled"] == 0.5 and i["benign_cared"]["pooled"] == 0.167
    cats = i["per_category"]
    assert cats["self_harm"]["n"] == 6 and cats["self_harm"]["combined"]["pooled"] == 0.833
    assert cats["scary"]["combined"] == {"mean": 1.0, "min": 1.0, "max": 1.0, "pooled": 1.0}
    assert cats["weapons"]["lexicon"] == {"mean": 0.0, "min": 0.0, "max": 0.0, "pooled": 0.0}
    assert i["groups"]["alert"]["n"] == 6 and i["groups"]["redirect"]["n"] == 4
    o = rep["output"]
    assert o["unsafe_caught"] == {"mean": 0.75, "min": 0.5, "max": 1.0, "pooled": 0.667}
    assert o["safe_blocked"] == {"mean": 0.5, "min": 0.0, "max": 1.0, "pooled": 0.333}
    assert (o["n_unsafe"], o["n_safe"]) == (3, 3)
    assert [f["alert_recall"] for f in rep["folds"]] == [0.5, 1.0]
    assert [f["output"]["safe_blocked"] for f in rep["folds"]] == [0.0, 1.0]
    assert [f["thresholds"]["input"]["alert"] for f in rep["folds"]] == [0.2, 0.3]


def test_a_fold_result_reads_back_as_it_was_written():
    for result in _results():
        assert FoldResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# -- resuming ------------------------------------------------------------------------------------------


def test_folds_already_scored_are_read_back_not_trained_again(tmp_path):
    plan = CvPlan(2, 1, 10)
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_dict()))
    for result in _results():
        (tmp_path / f"fold-{result.number}.json").write_text(json.dumps(result.to_dict()))
    said: list[str] = []
    # A source that does not exist: any training would fail.
    got = cross_validate(tmp_path / "no-such-encoder.zip", tmp_path, plan, said.append)
    assert got == _results()
    assert said == [f"fold {n}/2: done before ({tmp_path / f'fold-{n}.json'})" for n in (1, 2)]


def test_a_folder_of_another_plan_is_refused(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(CvPlan(2, 1, 10).to_dict()))
    with pytest.raises(CompanionError) as err:
        cross_validate(tmp_path / "no-such-encoder.zip", tmp_path, CvPlan(2, 1, 12), print)
    assert err.value.code == "SAFETY_CV_FOLDER_MISMATCH"


@pytest.mark.parametrize("argv,message", [
    (["--cv-limit", "10"], "error [USAGE_INVALID] --cv-limit: only with --cv K"),
    (["--cv", "2", "--split", "train"], "error [USAGE_INVALID]"),
    (["--cv", "1"], "cross-validation needs 2 folds or more"),
])
def test_cross_validation_options_are_checked(argv, message, capsys):
    from companion.cli.main import main

    try:
        rc = main(["eval", "safety-classifier", *argv])
    except SystemExit as exit_:  # argparse's own refusal
        rc = exit_.code
    assert rc == 2 and message in capsys.readouterr().err


# -- end to end: two folds of ten lines a class, one epoch (~30 s on 2 cores) --------------------------

#: The whole command in a fresh interpreter, which must not have imported torch: training is the child's.
CLI = ("import sys; from companion.cli.main import main; rc = main(sys.argv[1:]); "
       "assert 'torch' not in sys.modules, 'torch was imported by the main process'; sys.exit(rc)")


@pytest.mark.real_model
def test_a_soup_averages_each_weight_and_keeps_integer_buffers():
    import torch

    from companion.safety.train import soup

    runs = [{"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])},
            {"w": torch.tensor([3.0, 6.0]), "ids": torch.tensor([0, 1])},
            {"w": torch.tensor([2.0, 1.0]), "ids": torch.tensor([0, 1])}]
    averaged = soup(runs)
    assert torch.equal(averaged["w"], torch.tensor([2.0, 3.0])) and averaged["w"].dtype == torch.float32
    assert torch.equal(averaged["ids"], torch.tensor([0, 1])) and averaged["ids"].dtype == torch.int64


def test_a_two_fold_smoke_trains_scores_and_resumes(real_cache, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = [sys.executable, "-c", CLI, "eval", "safety-classifier", "--cv", "2", "--cv-limit", "10",
            "--cv-epochs", "1", "--cv-dir", str(tmp_path), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(proc.stdout)
    assert rep["cv"]["k"] == 2 and rep["cv"]["limit"] == 10 and rep["folder"] == str(tmp_path)
    assert len(rep["folds"]) == 2 and all(f["train_s"] > 0 for f in rep["folds"])
    assert "epoch 1/1 done" in proc.stderr and "fold 2/2: scored" in proc.stderr
    assert all(f"seed {seed} done" in proc.stderr for seed in SEEDS)  # each fold is a soup, as prepare's model
    cats = rep["input"]["per_category"]
    assert len(cats) == 17 and all(c["n"] == 10 for c in cats.values()), {k: c["n"] for k, c in cats.items()}
    assert sum(f["sizes"]["input_test"] for f in rep["folds"]) == 170
    assert rep["output"]["n_unsafe"] == rep["output"]["n_safe"] == 10
    for fold in rep["folds"]:
        assert set(fold["thresholds"]["input"]) == {"alert", "risk", "emotional"}
        assert set(fold["thresholds"]["output"]) == {"unsafe"}
    for name in ("alert_recall", "redirect_recall", "over_refusal"):
        s = rep["input"][name]
        assert 0 <= s["min"] <= s["mean"] <= s["max"] <= 1, (name, s)
    # Each fold's lines are kept; its model is not.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold-1.json", "fold-2.json", "plan.json"]
    scored = [line["text"] for n in (1, 2) for line in json.loads((tmp_path / f"fold-{n}.json").read_text())["input"]]
    assert len(scored) == len(set(scored)) == 170

    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and "epoch" not in again.stderr, again.stderr[-2000:]
    assert again.stderr.count("done before") == 2
    assert json.loads(again.stdout) == rep
