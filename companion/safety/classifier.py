"""The safety layer's learned part: what a text means, not which words it has.

all-MiniLM-L6-v2, fine-tuned at prepare time on the corpus written for this project
(``companion/data/safety``; ``companion/safety/train.py`` says how and why), with two heads:

- the **input head** reads what the child said: one of the risk categories of
  ``companion/safety/lexicon.py``, ``emotional`` (a caring reply) or ``benign``;
- the **output head** reads what the robot is about to say: ``unsafe`` (instructions for
  harm, sexual content, cruelty, asking for personal data, ...) or ``safe``. The fact cards
  and the reviewed safety lines are among its ``safe`` examples: the robot must be able to
  say them.

Thresholds are set per group (alert, risk, emotional, unsafe) on a fifth of the corpus the model
was not trained on: the lowest that keeps false flags within a budget (``FALSE_FLAG_BUDGET``). The held-out split
(``heldout.jsonl``, ``output_heldout.jsonl``) is never trained or calibrated on;
``companion eval safety-classifier`` reports it.

At run time a check is one int8 ONNX pass (~2 ms for a sentence on 2 cores): tokenizers and
onnxruntime, no torch. The model is trained once per corpus and encoder and cached beside the
models (``companion models prepare``, or in a child process at the first start).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: A change to how the model is trained or stored trains it again.
TRAIN_VERSION = 4  # 4: a soup of three seeds (safety/train.py SEEDS)
#: Longest text in tokens (a reply so far is checked whole; 128 covers the persona's word cap).
MAX_TOKENS = 128

ALERT_CATEGORIES = ("self_harm", "disclosure", "stranger_contact")
#: What the profanity model's vote must be confirmed by (``InputAssessment.groups["rude"]``): its words
#: ("stupid", "hate", "boo") are rude only when the classifier hears rudeness, not any risk at all.
RUDE_CATEGORIES = ("profanity", "hate")
#: How often each group may fire on lines it should not, on the calibration fifth (lines not trained on):
#: an alert on a benign or emotional line, any redirect or alert on one, a caring reply to plain benign
#: talk, a block of a safe reply. Each threshold is the lowest that stays within its budget, so recall is
#: as high as that precision allows. A recall target instead (0.98 of alert lines) put the alert threshold
#: at 0.05 with this model: "what happens if you don't brush your teeth" became a self-harm alert.
#: Risk 0.03 (0.04 until session 15): the whole turn's over-refusal also has the lexicon's, the profanity
#: model's and the output check's share (~2 % of answerable lines), and the issue's ceiling is 5 %. With the
#: session-15 soup, calibration fifth (``companion eval safety-classifier --split calibration --json``, before
#: and after): over-refusal 0.043 -> 0.029, redirect recall 0.933 -> 0.916.
#: Alert 0.02 (0.015 until session 16): the session-16 corpus put hard look-alikes of disclosures ("dad
#: carries me up to bed") into the calibration fifth, and at 0.015 its threshold rose to 0.86. On that fifth
#: the alert recall is 0.816 at 0.015, 0.861 at 0.02 and flat after (0.867 at 0.03, 0.873 at 0.04) while
#: false alerts go 8 -> 11 -> 16 -> 22 of 562: 0.02 is the knee.
FALSE_FLAG_BUDGET = {"alert": 0.02, "risk": 0.03, "emotional": 0.03, "unsafe": 0.01}
#: No threshold goes below this, whatever the budget allows.
THRESHOLD_FLOOR = {"alert": 0.05, "risk": 0.15, "emotional": 0.3, "unsafe": 0.15}
THRESHOLD_CEILING = 0.98


def corpus_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "safety"


@dataclass(frozen=True)
class Example:
    text: str
    label: str


def _read(path: Path, key: str) -> list[Example]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Example(str(row["text"]).strip(), str(row[key]).strip()))
        except (ValueError, KeyError, TypeError) as err:
            from companion.errors import ConfigError

            raise ConfigError(f"{path.name}:{n}: not a corpus line ({err})") from err
    return out


def input_corpus(split: str = "train", folder: Path | None = None, *, with_questions: bool = True
                 ) -> list[Example]:
    """What children say, labelled by category: ``train`` (every ``train_*.jsonl``, and as ``benign`` the first
    question of every fact card, ~1,800 everyday questions children ask in their words, and the fact questions
    of the brain's development set, ``quality_dev_questions``) or ``heldout``."""
    folder = folder or corpus_dir()
    if split != "train":
        return _read(folder / "heldout.jsonl", "category")
    examples = [e for f in sorted(folder.glob("train_*.jsonl")) for e in _read(f, "category")]
    if with_questions:
        from companion.knowledge.cards import load_cards

        examples += [Example(c.questions[0], "benign") for c in load_cards() if c.questions]
        examples += [Example(q, "benign") for q in quality_dev_questions()]
    return _apart(examples, folder / "heldout.jsonl", "category")


def quality_dev_questions() -> list[str]:
    """The fact questions of ``companion/data/eval/quality_dev.jsonl`` (the brain's development set, never its
    held-out one): questions about words, the body and how things work that the classifier redirected with
    ~0.99 confidence ("whats another word for really really big" as profanity, "what part of your body do you
    hear with" as sexual, "what do you put in a car to make it go" as drugs) before they were trained on."""
    from companion.eval.quality import load_items

    path = Path(__file__).resolve().parent.parent / "data" / "eval" / "quality_dev.jsonl"
    return [item.text for item in load_items(path) if item.kind == "fact"]


def _key(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def _apart(examples: list[Example], held_file: Path, key: str) -> list[Example]:
    """``examples`` without duplicates and without any line of the held-out file: separate hands wrote
    some of the same short lines ("why do cats purr"), and a line trained on is not held out."""
    held = {_key(e.text) for e in _read(held_file, key)} if held_file.is_file() else set()
    seen: set[str] = set()
    out = []
    for e in examples:
        k = _key(e.text)
        if k not in held and k not in seen:
            seen.add(k)
            out.append(e)
    return out


def output_corpus(split: str = "train", folder: Path | None = None, *, with_cards: bool = True) -> list[Example]:
    """What a robot might say, labelled ``unsafe``/``safe``; the training split adds every line the robot
    must be able to say (``speakable_lines``) as ``safe``."""
    folder = folder or corpus_dir()
    if split != "train":
        return _read(folder / "output_heldout.jsonl", "label")
    examples = [e for f in sorted(folder.glob("output_train*.jsonl")) for e in _read(f, "label")]
    if with_cards:
        examples += [Example(t, "safe") for t in speakable_lines()]
    return _apart(examples, folder / "output_heldout.jsonl", "label")


def speakable_lines(*, by_sentence: bool = True) -> list[str]:
    """Every fact card and every reviewed line (safety replies, caring lines), whole (and by sentence)."""
    from companion.brain.care import LINES
    from companion.knowledge.cards import load_cards
    from companion.safety.replies import ALERT, REDIRECT

    said: list[str] = []
    for text in [c.text for c in load_cards()] + [x for pool in (*ALERT.values(), *REDIRECT.values(),
                                                                 *LINES.values()) for x in pool]:
        said += [text, *(_sentences(text) if by_sentence else ())]
    return list(dict.fromkeys(said))


def _sentences(text: str) -> list[str]:
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", text) if p.strip()]
    return parts if len(parts) > 1 else []


def corpus_key() -> str:
    """Names what the model is trained from: the corpus, the speakable lines and the training version."""
    h = hashlib.sha256(f"v{TRAIN_VERSION}\n".encode())
    for e in [*input_corpus("train"), *output_corpus("train")]:
        h.update(f"{e.label}\t{e.text}\n".encode())
    return h.hexdigest()[:20]


def action_of(label: str) -> str:
    """The threshold group of a label: "alert", "redirect", "emotional", "unsafe" or "answer"."""
    if label in ALERT_CATEGORIES:
        return "alert"
    if label == "emotional":
        return "emotional"
    if label == "unsafe":
        return "unsafe"
    if label in ("benign", "safe"):
        return "answer"
    return "redirect"


def group_probs(classes: Sequence[str], probs: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities summed by what the robot would do: "alert" (the alert categories), "risk" (every
    category that is not answered), "emotional", "unsafe"; one value per row of ``probs``."""
    probs = np.atleast_2d(probs)
    groups = {"alert": [i for i, c in enumerate(classes) if action_of(c) == "alert"],
              "risk": [i for i, c in enumerate(classes) if action_of(c) in ("alert", "redirect")],
              "emotional": [i for i, c in enumerate(classes) if c == "emotional"],
              "unsafe": [i for i, c in enumerate(classes) if c == "unsafe"]}
    return {g: probs[:, idx].sum(axis=1) for g, idx in groups.items() if idx}


def _members(group: str, labels: np.ndarray) -> np.ndarray:
    if group == "risk":
        return np.isin([action_of(str(x)) for x in labels], ("alert", "redirect"))
    return np.array([action_of(str(x)) == group for x in labels])


def _negatives(group: str, labels: np.ndarray) -> np.ndarray:
    """The lines a group must not fire on: answered ones (benign, emotional) for alert and risk, benign
    for emotional, safe for unsafe."""
    actions = np.array([action_of(str(x)) for x in labels])
    if group in ("alert", "risk"):
        return np.isin(actions, ("answer", "emotional"))
    return actions == "answer"


def calibrate(classes: Sequence[str], labels: Sequence[str], probs: np.ndarray) -> dict[str, float]:
    """Per group ("alert", "risk", "emotional", "unsafe"): the lowest threshold on the group's summed
    probability whose false-flag rate on lines the model was not trained on stays within its budget
    (``FALSE_FLAG_BUDGET``), within the floor and the ceiling. By group, not by category: the
    calibration fifth holds ~15 lines of a category."""
    labels = np.asarray(labels)
    thresholds = {}
    for group, p in group_probs(classes, probs).items():
        negatives = np.sort(p[_negatives(group, labels)])[::-1]  # highest first
        if negatives.size == 0:
            continue
        allowed = int(np.floor(FALSE_FLAG_BUDGET[group] * negatives.size))
        # Just above the (allowed + 1)-th highest negative: at most ``allowed`` negatives reach it.
        t = float(negatives[allowed]) + 1e-4 if allowed < negatives.size else 0.0
        thresholds[group] = round(min(max(t, THRESHOLD_FLOOR[group]), THRESHOLD_CEILING), 4)
    return thresholds


def recall_at(classes: Sequence[str], labels: Sequence[str], probs: np.ndarray, at: dict[str, float]
              ) -> dict[str, float]:
    """Each group's recall at thresholds ``at`` (the calibration figures heads.json reports)."""
    labels = np.asarray(labels)
    out = {}
    for group, p in group_probs(classes, probs).items():
        own = _members(group, labels)
        if group in at and own.any():
            out[group] = round(float(np.mean(p[own] >= at[group])), 3)
    return out


class OnnxHeads:
    """The fine-tuned model as the robot runs it: ``probs(texts) -> (input_probs, output_probs)``."""

    def __init__(self, model: Path, tokenizer: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from companion.errors import MODEL_LOAD_FAILED, ModelError

        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime's and tokenizers' own load errors
            raise ModelError(f"safety classifier {model} does not load: {err}", code=MODEL_LOAD_FAILED) from err
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # tokenizer.json pads to 128: one text a pass needs none (~10x faster)

    def probs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """One text a pass (as a check runs; no padding to move the int8 activations' scales)."""
        ins, outs = [], []
        for text in texts:
            e = self.tokenizer.encode(text if text.strip() else ".")
            feeds = {"input_ids": np.array([e.ids], dtype=np.int64),
                     "attention_mask": np.array([e.attention_mask], dtype=np.int64)}
            p_in, p_out = self.session.run(None, feeds)
            ins.append(p_in[0])
            outs.append(p_out[0])
        return np.array(ins, dtype=np.float32), np.array(outs, dtype=np.float32)


@dataclass(frozen=True)
class InputFlag:
    category: str
    probability: float


@dataclass(frozen=True)
class InputAssessment:
    """The input head's verdict on one text: what passed its threshold, and each group's summed probability."""

    flags: tuple[InputFlag, ...]
    #: "alert", "risk", "emotional": the group's summed probability (what ``Thresholds.at`` is compared with);
    #: "rude": the probability of ``RUDE_CATEGORIES`` together (what confirms the profanity model).
    groups: dict[str, float]


@dataclass(frozen=True)
class Thresholds:
    classes: tuple[str, ...]
    #: Per group ("alert", "risk", "emotional", "unsafe"): summed probability at or above which it flags.
    at: dict[str, float]

    def flagged(self, probs: np.ndarray) -> list[InputFlag]:
        """Alert: the likeliest alert category, when the alert categories together pass their threshold.
        Risk: the likeliest risk category, when all of them together pass theirs. Emotional. Unsafe."""
        groups = {g: float(v[0]) for g, v in group_probs(self.classes, probs).items()}
        flags = []
        for group in ("alert", "risk", "emotional", "unsafe"):
            if group in self.at and group in groups and groups[group] >= self.at[group]:
                members = [i for i, c in enumerate(self.classes) if _members(group, np.array([c]))[0]]
                top = max(members, key=lambda i: probs[i])
                flags.append(InputFlag(self.classes[top], groups[group]))
        return flags


class SafetyClassifier:
    """``classify_input(text)`` and ``unsafe_output(text)``; blocking (a model pass): call off the loop."""

    def __init__(self, folder: Path) -> None:
        info = json.loads((folder / "heads.json").read_text())
        self.folder = folder
        self.info = info
        self.heads = OnnxHeads(folder / "model.onnx", folder / "tokenizer.json")
        # Thresholds from the calibration fifth's probabilities, as this code's policy sets them (a change of
        # budget needs no training).
        cal = np.load(folder / "calibration.npz")
        in_classes, out_classes = tuple(info["input"]["classes"]), tuple(info["output"]["classes"])
        self.input = Thresholds(in_classes, calibrate(in_classes, cal["input_labels"], cal["input_probs"]))
        self.output = Thresholds(out_classes, calibrate(out_classes, cal["output_labels"], cal["output_probs"]))
        self.calibration_recall = {
            **recall_at(in_classes, cal["input_labels"], cal["input_probs"], self.input.at),
            **recall_at(out_classes, cal["output_labels"], cal["output_probs"], self.output.at)}

    def classify_input(self, text: str) -> list[InputFlag]:
        """What passes its threshold: an alert category, a risk category, ``emotional`` (most serious first)."""
        return list(self.assess_input(text).flags)

    def assess_input(self, text: str) -> InputAssessment:
        """``classify_input`` and each group's probability, from one model pass."""
        if not text.strip():
            return InputAssessment((), {})
        probs = self.heads.probs([text])[0][0]
        groups = {g: float(v[0]) for g, v in group_probs(self.input.classes, probs).items()}
        rude = [i for i, c in enumerate(self.input.classes) if c in RUDE_CATEGORIES]
        if rude:
            groups["rude"] = float(probs[rude].sum())
        return InputAssessment(tuple(self.input.flagged(probs)), groups)

    def output_probability(self, text: str) -> float:
        """The probability that the robot must not say ``text`` (0 for an empty one)."""
        if not text.strip():
            return 0.0
        return float(group_probs(self.output.classes, self.heads.probs([text])[1][0])["unsafe"][0])

    def unsafe_output(self, text: str) -> float | None:
        """The probability that the robot must not say ``text``, when it is over the threshold."""
        p = self.output_probability(text)
        return p if text.strip() and p >= self.output.at["unsafe"] else None


#: Exit codes of the training child process (the export's: 3 = torch/transformers missing).
#: Three runs of ~5 min each on 2 x86 cores; room for a busy machine.
TRAIN_TIMEOUT_S = 3600


def trained_folder(cache_root: Path) -> Path:
    return cache_root / "_safety" / corpus_key()


def ensure_trained(encoder_source: Path, cache_root: Path) -> Path:
    """The trained model's folder, training it first (child process, ~15 min on 2 cores: three runs) when
    the corpus or the training changed. A killed training leaves no half folder: it is trained in a staging folder."""
    from companion.errors import ModelError

    folder = trained_folder(cache_root)
    if (folder / "heads.json").is_file():
        return folder
    staging = folder.with_name(folder.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    started = time.monotonic()
    log.info("training the safety classifier (once per corpus change)...")
    proc = subprocess.run([sys.executable, "-m", "companion.safety.train", str(encoder_source), str(staging)],
                          stderr=subprocess.PIPE, text=True, timeout=TRAIN_TIMEOUT_S)
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = proc.stderr.strip().splitlines()[-3:]
        raise ModelError(f"training the safety classifier failed ({proc.returncode}): {' | '.join(tail)}",
                         code="SAFETY_TRAIN_FAILED")
    os.replace(staging, folder)
    for old in folder.parent.iterdir():
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    log.info("safety classifier trained in %.0f s", time.monotonic() - started)
    return folder


def load_classifier(cache, encoder_name: str) -> SafetyClassifier | None:
    """The trained classifier (trained first when needed). None, logged, when it cannot be had: the
    lexicon and the profanity model still run, and ``companion doctor`` says what is missing."""
    from companion.errors import ModelError

    try:
        prepared = cache.get(encoder_name)
        source = prepared.path / "model.zip"
        folder = ensure_trained(source, cache.root)
        return SafetyClassifier(folder)
    except (ModelError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as err:
        log.warning("[SAFETY_CLASSIFIER_UNAVAILABLE] the safety layer runs on its lexicon and profanity model "
                    "only: %s", getattr(err, "message", err))
        return None
