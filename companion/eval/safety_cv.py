"""Cross-validation of the safety classifier on its training corpus: ``companion eval safety-classifier
--cv K``.

The hand-written training lines of each head (``train_*.jsonl`` for the input head,
``output_train.jsonl`` for the output head) are split into K stratified folds (``cv_folds``, by
``companion.safety.train.folds``). Fold N is scored on its own lines by a model fitted on the other
folds, with its own calibration fifth carved out of them (``TrainingLines.of``, as prepare does). The
extra lines (the cards' questions, the speakable lines) are fitted on in every fold and never scored,
as prepare never calibrates on them; an extra line that is also hand-written is dropped, so no scored
line is ever fitted on. The held-out files (``heldout.jsonl``, ``output_heldout.jsonl``) are never read:
``input_corpus`` and ``output_corpus`` keep their lines out of the training split.

Each fold's model is trained exactly as prepare trains one, by ``python -m companion.safety.train`` in a
child process (torch never enters this one), and scored by the same rule as the held-out report
(``run_input``, ``output_lines`` from ``companion.eval.safety_classifier``), so the two sets of figures
mean the same thing. ``summarise_cv`` gives every figure of the held-out report as mean, min and max
across folds and pooled over all of them; ``format_cv_table`` prints it.

Resume: a run's folder (``cv_folder``: ``_safety_cv/<corpus>-k<K>-e<epochs>[-n<limit>]`` under the model
cache, or ``--cv-dir``) belongs to one plan, recorded in ``plan.json`` (K, epochs, limit, seed, training
version, corpus key); a folder of another plan is refused, and default folders of another corpus are
removed. Each fold's result is written whole to ``fold-N.json`` as soon as it is scored and its model is
deleted; a stopped run skips the folds that have a result, and scores a fold model that was trained but
not yet scored instead of training it again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from companion.errors import CompanionError, ModelError
from companion.eval.safety_classifier import (Line, OutputLine, corroboration_sweep, output_lines, run_input,
                                              summarise_input, summarise_output)
from companion.safety.classifier import (TRAIN_VERSION, Example, SafetyClassifier, _key, corpus_key, input_corpus,
                                         output_corpus)
from companion.safety.train import EPOCHS, SEED, TrainingLines, extra_inputs, extra_outputs, folds

LAYERS = ("combined", "classifier", "lexicon")
#: The input figures of one run, as ``summarise_input`` gives them.
HEADLINE = ("alert_recall", "redirect_recall", "over_refusal", "benign_over_refusal", "emotional_answered",
            "emotional_cared", "benign_cared")


@dataclass(frozen=True)
class CvPlan:
    """One cross-validation's settings: a folder of fold results belongs to one plan."""

    #: Folds (2 or more): each is scored by a model trained on all the others.
    k: int
    #: Training epochs of each fold's model (prepare's by default).
    epochs: int = EPOCHS
    #: Only the first N hand-written lines of each class and N of each kind of extra line: a quick smoke
    #: for the tests, not a figure to quote.
    limit: int | None = None

    def to_dict(self) -> dict:
        """With what it is trained from: a fold trained from another corpus is not resumed."""
        return {"k": self.k, "epochs": self.epochs, "limit": self.limit, "seed": SEED,
                "train_version": TRAIN_VERSION, "corpus_key": corpus_key()}


@dataclass(frozen=True)
class Fold:
    """One fold: what its model fits and calibrates on, and the lines it is scored on."""

    number: int
    training: TrainingLines
    input_test: list[Example]
    output_test: list[Example]


@dataclass(frozen=True)
class FoldResult:
    """A scored fold, as kept in ``fold-N.json``."""

    number: int
    input: list[Line]
    output: list[OutputLine]
    #: The fold model's calibrated thresholds per head and group.
    thresholds: dict[str, dict[str, float]]
    #: Lines fitted on, calibrated on and scored, per head.
    sizes: dict[str, int]
    train_s: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FoldResult:
        return cls(data["number"], [Line(**x) for x in data["input"]], [OutputLine(**x) for x in data["output"]],
                   data["thresholds"], data["sizes"], data["train_s"])


def _first(examples: list[Example], limit: int | None) -> list[Example]:
    """The first ``limit`` examples of each label, in corpus order (all when None)."""
    if limit is None:
        return examples
    seen: dict[str, int] = defaultdict(int)
    out = []
    for e in examples:
        if seen[e.label] < limit:
            seen[e.label] += 1
            out.append(e)
    return out


def _unlike(extra: list[Example], hand: list[Example]) -> list[Example]:
    """``extra`` without any line that is also hand-written: a line fitted in every fold is never scored."""
    written = {_key(e.text) for e in hand}
    return [e for e in extra if _key(e.text) not in written]


def cv_folds(plan: CvPlan) -> list[Fold]:
    """The hand-written lines of each head (``train_*.jsonl``, ``output_train.jsonl``) in ``plan.k``
    stratified folds. Fold N is scored on its own lines by a model fitted on the others, with its
    calibration fifth carved out of them (``TrainingLines.of``, as prepare does); the extra lines (the
    cards' questions, the speakable lines) are fitted on in every fold and never scored, as prepare never
    calibrates on them. The held-out files are not read (``input_corpus`` keeps their lines out)."""
    in_hand = _first(input_corpus("train", with_questions=False), plan.limit)
    out_hand = _first(output_corpus("train", with_cards=False), plan.limit)
    in_extra = _unlike(extra_inputs(input_corpus("train", with_questions=False)), in_hand)[: plan.limit]
    out_extra = _unlike(extra_outputs(), out_hand)[: plan.limit]
    try:
        out = []
        for n, (in_test, out_test) in enumerate(zip(folds(in_hand, plan.k), folds(out_hand, plan.k)), 1):
            in_left, out_left = set(in_test), set(out_test)
            training = TrainingLines.of([e for e in in_hand if e not in in_left], in_extra,
                                        [e for e in out_hand if e not in out_left], out_extra)
            out.append(Fold(n, training, in_test, out_test))
    except ValueError as err:  # scikit-learn: a class with fewer lines than folds, or too few to calibrate on
        limit = f" (--cv-limit {plan.limit})" if plan.limit else ""
        raise CompanionError(f"too few lines of a class for {plan.k} folds, each with a calibration fifth"
                             f"{limit}: {err}", code="SAFETY_CV_TOO_FEW_LINES") from err
    return out


def cv_folder(cache_root: Path, plan: CvPlan) -> Path:
    """The default folder of a plan's fold results, under the model cache: the same for the same plan, so
    a stopped run resumes. Folders of another corpus can never resume and are removed."""
    key = corpus_key()
    root = cache_root / "_safety_cv"
    if root.is_dir():
        for old in root.iterdir():
            if old.is_dir() and not old.name.startswith(key):
                shutil.rmtree(old, ignore_errors=True)
    return root / (f"{key}-k{plan.k}-e{plan.epochs}" + (f"-n{plan.limit}" if plan.limit else ""))


def cross_validate(source: Path, folder: Path, plan: CvPlan, log: Callable[[str], None]) -> list[FoldResult]:
    """Train and score each fold in turn; ``source`` is the encoder checkpoint (folder or zip) prepare
    trains from. Each fold's result is written to ``folder/fold-N.json`` as soon as it is known and its
    model is deleted; a run that was stopped resumes with the first fold that has no result."""
    folds_ = cv_folds(plan)  # a bad plan fails before any training
    folder.mkdir(parents=True, exist_ok=True)
    _claim(folder, plan)
    results = []
    for fold in folds_:
        name = f"fold {fold.number}/{plan.k}"
        done = folder / f"fold-{fold.number}.json"
        if done.is_file():
            results.append(FoldResult.from_dict(json.loads(done.read_text())))
            log(f"{name}: done before ({done})")
            continue
        work = folder / f"fold-{fold.number}"
        t = fold.training
        log(f"{name}: fitting on {len(t.input_fit)} input and {len(t.output_fit)} output lines, calibrating on "
            f"{len(t.input_calibration)} and {len(t.output_calibration)}, scoring {len(fold.input_test)} and "
            f"{len(fold.output_test)}")
        model = _trained(source, work, t, plan.epochs, lambda m, name=name: log(f"{name}: {m}"))
        started = time.monotonic()
        classifier = SafetyClassifier(model)
        result = FoldResult(
            fold.number, run_input(classifier, fold.input_test), output_lines(classifier, fold.output_test),
            {"input": classifier.input.at, "output": classifier.output.at},
            {"input_fit": len(t.input_fit), "input_calibration": len(t.input_calibration),
             "input_test": len(fold.input_test), "output_fit": len(t.output_fit),
             "output_calibration": len(t.output_calibration), "output_test": len(fold.output_test)},
            float(classifier.info.get("train_s", 0.0)))
        _write_json(done, result.to_dict())
        shutil.rmtree(work, ignore_errors=True)
        s, o = summarise_input(result.input), summarise_output(result.output)
        log(f"{name}: scored in {time.monotonic() - started:.0f} s: alert recall {s['alert_recall']}, redirect "
            f"recall {s['redirect_recall']}, over-refusal {s['over_refusal']}; output: unsafe caught "
            f"{o['unsafe_caught']}, safe blocked {o['safe_blocked']}")
        results.append(result)
    return results


def _claim(folder: Path, plan: CvPlan) -> None:
    """``folder`` holds this plan's folds (``plan.json``), or none yet."""
    mine = plan.to_dict()
    record = folder / "plan.json"
    if record.is_file():
        theirs = json.loads(record.read_text())
        if theirs != mine:
            raise CompanionError(f"{folder} holds the folds of another cross-validation ({theirs}, not {mine}); "
                                 f"name another --cv-dir or remove it", code="SAFETY_CV_FOLDER_MISMATCH")
        return
    _write_json(record, mine)


def _write_json(path: Path, data: dict) -> None:
    """Whole or not at all: a run killed while writing leaves no half file to resume from."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, ensure_ascii=False))
    os.replace(part, path)


def _trained(source: Path, work: Path, lines: TrainingLines, epochs: int, log: Callable[[str], None]) -> Path:
    """The fold's model folder, trained by ``python -m companion.safety.train`` as prepare trains (a model
    trained before a stop, but not yet scored, is kept)."""
    model, staging = work / "model", work / "model.staging"
    if (model / "heads.json").is_file():
        log("trained before the last stop; scoring it")
        return model
    shutil.rmtree(staging, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    lines_file = work / "lines.json"
    _write_json(lines_file, lines.to_dict())
    cmd = [sys.executable, "-m", "companion.safety.train", str(source), str(staging), "--lines", str(lines_file),
           "--epochs", str(epochs)]
    tail: deque[str] = deque(maxlen=12)  # the last lines, for the error
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            tail.append(line)
            if line.startswith("[safety-train] "):
                log(line.removeprefix("[safety-train] "))
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(f"training a cross-validation fold failed ({proc.returncode}): {' | '.join(tail)}",
                         code="SAFETY_TRAIN_FAILED")
    os.replace(staging, model)
    return model


def _spread(values: list[float | None], pooled: float | None) -> dict:
    """Across folds: mean, lowest and highest (of the folds that have the figure), and the figure of all the
    folds' lines pooled."""
    known = [v for v in values if v is not None]
    if not known:
        return {"mean": None, "min": None, "max": None, "pooled": pooled}
    return {"mean": round(float(np.mean(known)), 3), "min": min(known), "max": max(known), "pooled": pooled}


def summarise_cv(results: list[FoldResult]) -> dict:
    """Every figure of the held-out report, as mean, min and max across folds and pooled over all of them."""
    if not results:
        raise ValueError("no fold results to summarise")
    per_fold = [summarise_input(r.input) for r in results]
    pooled = summarise_input([line for r in results for line in r.input])
    out_fold = [summarise_output(r.output) for r in results]
    out_pooled = summarise_output([line for r in results for line in r.output])

    def table(key: str) -> dict:
        return {name: {"n": row["n"], **{layer: _spread([f[key].get(name, {}).get(layer) for f in per_fold],
                                                        row[layer]) for layer in LAYERS}}
                for name, row in pooled[key].items()}

    return {
        "folds": [{"fold": r.number, "train_s": r.train_s, "sizes": r.sizes, "thresholds": r.thresholds,
                   **{h: f[h] for h in HEADLINE}, "output": o} for r, f, o in zip(results, per_fold, out_fold)],
        "input": {**{h: _spread([f[h] for f in per_fold], pooled[h]) for h in HEADLINE},
                  "groups": table("groups"), "per_category": table("per_category"),
                  # CORROBORATION's sweep on the pooled out-of-fold lines (set on the calibration fifth).
                  "corroboration": corroboration_sweep([line for r in results for line in r.input])},
        "output": {**{h: _spread([o[h] for o in out_fold], out_pooled[h]) for h in ("unsafe_caught", "safe_blocked")},
                   "n_unsafe": out_pooled["n_unsafe"], "n_safe": out_pooled["n_safe"]},
    }


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _range(s: dict) -> str:
    return f"{_num(s['mean'])} [{_num(s['min'])}-{_num(s['max'])}] pooled {_num(s['pooled'])}"


def format_cv_table(rep: dict) -> str:
    cv = rep["cv"]
    rows = [f"{'category':20} {'n':>5} {'combined: mean [min-max]':>26} {'pooled':>7} {'classifier':>11} "
            f"{'lexicon':>8}"]
    for name, r in rep["input"]["per_category"].items():
        c = r["combined"]
        rows.append(f"{name:20} {r['n']:>5} {_num(c['mean']):>12} [{_num(c['min'])}-{_num(c['max'])}] "
                    f"{_num(c['pooled']):>7} {_num(r['classifier']['mean']):>11} {_num(r['lexicon']['mean']):>8}")
    i, o = rep["input"], rep["output"]
    rows += ["", *(f"{h.replace('_', ' '):20} {_range(i[h])}" for h in HEADLINE),
             f"{'output unsafe caught':20} {_range(o['unsafe_caught'])}  (of {o['n_unsafe']})",
             f"{'output safe blocked':20} {_range(o['safe_blocked'])}  (of {o['n_safe']})",
             f"\n{cv['k']}-fold cross-validation on the training corpus, {cv['epochs']} epochs a fold"
             + (f", first {cv['limit']} lines a class only (a smoke, not a figure)" if cv.get("limit") else "")
             + "; the classifier and lexicon columns are means across folds"]
    return "\n".join(rows)
