"""``companion eval speakers``: can the robot tell the children apart, and does it refuse strangers?

The speaker test set is built here from distinct voices this machine has, each also made younger:
- espeak-ng voices that differ (bench/voices.py ``VOICE_POOL``: accents, voice variants, pitch),
  and the Piper voice the robot itself speaks with;
- each of them as recorded and sped up (``sox speed``: pitch, formants and tempo up together, as a
  smaller vocal tract sounds), so the pool holds adult and child-like versions of every voice;
- real recorded adult speech (the project's recordings: JFK, the two diarization speakers, the
  hotwords clip), never enrolled: strangers whose false accepts are counted apart.
These are adult or synthetic voices; real children's voices are harder (higher pitch, less training
data behind the encoders) and they change as children grow.

Each draw enrols ``ENROLLED`` identities from the pool, each from the same ~20 s of enrolment
sentences, then identifies everyone's test sentences (other sentences than the enrolment ones):
an enrolled voice must come out as itself, any other voice as a guest. Reported: accuracy (the right
child, accepted), false accepts of unenrolled voices (synthetic and real apart), the confusion matrix
of the first draw, the equal error rate over all target / non-target scores, the threshold sweep,
and how short turns fare after the same child (kept) and after another (must not be taken for that
child's). The thresholds were chosen on ``DEV_LINES``/``DEV_SHORT``; the figures are on ``TEST_LINES``/
``TEST_SHORT``.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.speaker.config import SpeakerConfig
from companion.speaker.encoder import SpeakerEncoder
from companion.speaker.identify import identify, voiceprint

#: About 20 s of speech at espeak's pace: what the robot asks a child for at enrolment.
ENROL_LINES = (
    "Hello robot, my name is a secret but I will tell you my favourite colour is green.",
    "Yesterday we went to the park and I climbed all the way up the big slide.",
    "I like dinosaurs because they are big and some of them could even fly.",
    "My teacher read us a story about a bear who lost his red hat in the snow.",
    "When I grow up I want to drive a fire truck and help people.",
    "Can you tell me a joke about a banana and a monkey please?",
)
#: Sentences the threshold was chosen on.
DEV_LINES = (
    "Why do cats purr when you stroke them?",
    "I built a tower with my blocks and it fell down.",
    "Do you know how many legs a spider has?",
    "My little brother took my crayons again today.",
    "What do whales eat in the deep ocean?",
    "Can we play a game of hide and seek now?",
)
#: Sentences the figures are reported on (neither enrolment nor threshold saw them).
TEST_LINES = (
    "I have a puppy called Biscuit and he likes to chew my socks.",
    "How far away is the moon from our house?",
    "Today at school we painted pictures of butterflies.",
    "I don't like broccoli but I love strawberries.",
    "Is it true that octopuses have three hearts?",
    "Grandma is coming to visit us on Saturday.",
    "Why does the sun go down at night?",
    "I lost my tooth and the tooth fairy left me a coin.",
)
#: Short turns (0.4-1.5 s of speech), where voices alone overlap: the loop keeps the last speaker for
#: these unless the voice contradicts it. Development and test halves, as above.
DEV_SHORT = ("Yes!", "I like pizza.", "Can we play now?", "Look at my drawing!", "Where is the cat?", "I'm hungry.")
TEST_SHORT = ("A dog.", "No thank you.", "What is my pet called?", "I want a cookie.", "Tell me a story.",
              "My tooth is wobbly.")

ENROLLED = 4
#: How much younger the child-like version of each voice sounds (sox speed factor).
CHILD_SPEED = 1.3


@dataclass(frozen=True)
class Voice:
    key: str
    #: "synthetic" or "real" (real voices are never enrolled: they have no enrolment sentences).
    kind: str


def _synthetic_voices() -> list[tuple[str, object]]:
    from companion.bench.voices import VOICE_POOL

    return [(f"espeak:{v.key}", v) for v in VOICE_POOL] + [("piper:joe", "piper")]


def _say(voice, text: str, piper) -> np.ndarray:
    from companion.bench.voices import synthesize, to_16k

    if voice == "piper":
        speech = piper.synthesize_sync(text)
        return to_16k(speech.samples, speech.rate)
    audio, rate = synthesize(text, voice)
    return to_16k(audio, rate)


def build_set(piper, lines: tuple[str, ...], short: tuple[str, ...]) -> dict[str, dict[str, list[np.ndarray]]]:
    """{identity: {"enrol": [...], "test": [...], "short": [...]}}, 16 kHz; every base voice twice (as
    synthesised, and sped up by ``CHILD_SPEED``)."""
    from companion.bench.voices import speed_shift

    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for key, voice in _synthetic_voices():
        parts = {name: [_say(voice, t, piper) for t in texts]
                 for name, texts in (("enrol", ENROL_LINES), ("test", lines), ("short", short))}
        out[key] = parts
        out[f"{key}@x{CHILD_SPEED}"] = {name: [speed_shift(a, CHILD_SPEED) for a in audios]
                                       for name, audios in parts.items()}
    return out


def real_strangers(recordings: Path) -> dict[str, list[np.ndarray]]:
    """The project's real recordings cut into 2.5 s pieces: adult strangers, never enrolled."""
    from companion.audio.files import read_all

    clips = {"real:jfk": read_all(recordings / "jfk.flac"),
             "real:diarization-left": read_all(recordings / "stereo_diarization.wav", channel=0),
             "real:diarization-right": read_all(recordings / "stereo_diarization.wav", channel=1),
             "real:hotwords": read_all(recordings / "hotwords.mp3")}
    piece = int(2.5 * 16_000)
    return {key: [a[i:i + piece] for i in range(0, len(a) - piece // 2, piece)] for key, a in clips.items()}


def _eer(target: list[float], nontarget: list[float]) -> tuple[float, float]:
    """Equal error rate and the threshold where it is reached (every score tried as the threshold)."""
    t, n = np.sort(np.asarray(target)), np.sort(np.asarray(nontarget))
    ths = np.unique(np.concatenate([t, n]))
    frr = np.searchsorted(t, ths, side="left") / len(t)          # targets below the threshold
    far = 1.0 - np.searchsorted(n, ths, side="left") / len(n)    # non-targets at or above it
    i = int(np.argmin(np.abs(frr - far)))
    return round(float(frr[i] + far[i]) / 2, 4), round(float(ths[i]), 4)


def evaluate(encoder: SpeakerEncoder, piper, recordings: Path, config: SpeakerConfig, *, draws: int = 20,
             seed: int = 0, dev: bool = False) -> dict:
    started = time.monotonic()
    lines, short = (DEV_LINES, DEV_SHORT) if dev else (TEST_LINES, TEST_SHORT)
    threshold, min_speech_s = config.threshold, config.min_speech_s
    keep = dict(keep_threshold=config.keep_threshold, keep_margin=config.keep_margin)
    audio = build_set(piper, lines, short)
    strangers = real_strangers(recordings)
    synth_s = time.monotonic() - started
    timings: list[float] = []

    def emb(a: np.ndarray):
        e = encoder.embed(a)
        timings.append(e.model_ms)
        return e

    vecs = {k: {part: [emb(a) for a in parts[part]] for part in parts} for k, parts in audio.items()}
    real = {k: [emb(a) for a in clips] for k, clips in strangers.items()}
    prints = {k: voiceprint([e.vector for e in v["enrol"]]) for k, v in vecs.items()}
    rng = random.Random(seed)
    keys = sorted(vecs)
    right = total = 0
    fa = fa_n = fa_real = fa_real_n = 0
    short_right = short_n = short_wrong = short_wrong_n = 0
    target: list[float] = []
    nontarget: list[float] = []
    per_voice: dict[str, list[int]] = {k: [0, 0] for k in keys}
    confusion: dict[str, dict[str, int]] = {}
    real_max = -1.0
    sweep_th = [round(x, 2) for x in np.arange(0.60, 0.975, 0.01)]
    sweep = {th: [0, 0, 0, 0] for th in sweep_th}  # right, total, fa, fa_n
    #: Unenrolled voice -> the enrolled voice it was taken for, over every draw: where the errors are.
    taken_for: Counter[str] = Counter()
    for draw in range(draws):
        enrolled = rng.sample(keys, ENROLLED)
        enrolled_prints = {k: prints[k] for k in enrolled}
        for key in keys:
            for e in vecs[key]["test"]:
                g = identify(e.vector, enrolled_prints, threshold=threshold, speech_s=e.speech_s,
                             min_speech_s=min_speech_s, last=None, **keep)
                sc = {k: float(e.vector @ p) for k, p in enrolled_prints.items()}
                best = max(sc, key=sc.get)
                if key in enrolled:
                    total += 1
                    per_voice[key][1] += 1
                    ok = g.child == key
                    right += ok
                    per_voice[key][0] += ok
                    target.append(sc[key])
                    nontarget.extend(v for k, v in sc.items() if k != key)
                    for th in sweep_th:
                        sweep[th][0] += best == key and sc[key] >= th
                        sweep[th][1] += 1
                else:
                    fa_n += 1
                    fa += g.child is not None
                    if g.child is not None:
                        taken_for[f"{key} -> {g.child}"] += 1
                    nontarget.extend(sc.values())
                    for th in sweep_th:
                        sweep[th][2] += sc[best] >= th
                        sweep[th][3] += 1
                if draw == 0:
                    row = confusion.setdefault(key if key in enrolled else "(not enrolled)", {})
                    col = g.child or "guest"
                    row[col] = row.get(col, 0) + 1
            for e in vecs[key]["short"]:
                # The child who spoke before: the same one (its turn should be kept), or another enrolled
                # child (the short turn must not be taken for theirs, nor for any other child's).
                for last in enrolled:
                    g = identify(e.vector, enrolled_prints, threshold=threshold, speech_s=e.speech_s,
                                 min_speech_s=min_speech_s, last=last, **keep)
                    if key == last:
                        short_n += 1
                        short_right += g.child == key
                    else:
                        short_wrong_n += 1
                        short_wrong += g.child is not None and g.child != key
        for clips in real.values():
            for e in clips:
                g = identify(e.vector, enrolled_prints, threshold=threshold, speech_s=e.speech_s,
                             min_speech_s=min_speech_s, last=None, **keep)
                fa_real_n += 1
                fa_real += g.child is not None
                real_scores = [float(e.vector @ p) for p in enrolled_prints.values()]
                real_max = max(real_max, *real_scores)
                nontarget.extend(real_scores)
    eer, eer_th = _eer(target, nontarget)
    return {
        "model": encoder.name, "threshold": threshold, "draws": draws, "enrolled_per_draw": ENROLLED,
        "identities": len(keys), "real_strangers": sorted(real), "test_utterances_per_voice": len(lines),
        "accuracy": round(right / max(1, total), 4), "identified": total,
        "false_accept": round(fa / max(1, fa_n), 4), "unenrolled_trials": fa_n,
        "false_accept_real": round(fa_real / max(1, fa_real_n), 4), "real_trials": fa_real_n,
        "real_max_score": round(real_max, 4), "false_accepts_by_voice": dict(taken_for.most_common(6)),
        "eer": eer, "eer_threshold": eer_th,
        "short_kept_right": round(short_right / max(1, short_n), 4), "short_trials": short_n,
        "short_taken_for_another_child": round(short_wrong / max(1, short_wrong_n), 4),
        "short_other_trials": short_wrong_n,
        "short_speech_s": [float(np.percentile([e.speech_s for v in vecs.values() for e in v["short"]], q))
                           for q in (10, 50, 90)],
        "test_speech_s": [float(np.percentile([e.speech_s for v in vecs.values() for e in v["test"]], q))
                          for q in (10, 50, 90)],
        "sweep": {str(th): {"accuracy": round(v[0] / max(1, v[1]), 4), "false_accept": round(v[2] / max(1, v[3]), 4)}
                  for th, v in sweep.items()},
        "per_voice_accuracy": {k: round(v[0] / v[1], 3) for k, v in per_voice.items() if v[1]},
        "confusion_first_draw": confusion,
        "embed_ms_p50": round(statistics.median(timings), 1),
        "synthesis_s": round(synth_s, 1), "total_s": round(time.monotonic() - started, 1),
    }
