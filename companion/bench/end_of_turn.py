"""``companion bench turn``: the end-of-turn decision alone, pause by pause, without the rest of the loop.

Every utterance of the turn-taking set (the paused sentences, the short answers, the generated lines and
the carried recordings, as ``companion bench`` plays them) goes through the real VAD and endpointer; at
each pause the loop would hear (a tentative end), the end-of-turn model hears the utterance so far, as
the loop feeds it, and Whisper transcribes it for the transcript's vote; ``turn/decide.py`` then says how
long the robot would wait. Against how long the child actually paused:

- a pause inside a sentence that lasts longer than the wait is an early end (the robot would have
  taken the turn: at most a cut-in, since the loop still needs its reply ready in time);
- at the last pause, the wait is what the finished child waits (plus the model's time when it is
  slower than the wait).

Reported per vote (the model alone, the transcript alone, both) so that the settings can be chosen,
and the model's per-call time on this machine (a Pi 5 is ~2-3x slower: its time must stay within the
wait it saves). Run in seconds, without the language model, so without its vote on bare words
(``Generator.ends_here``, which needs the reply's prompt): the transcript votes with its punctuation and
last word only here, and "and so my fellow Americans" has no vote. ``companion bench`` (the whole loop)
counts that vote in its cut-ins. No figure is asserted.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from companion.audio.frames import PIPELINE_RATE, AudioFrame
from companion.bench.turns import percentile
from companion.bench.utterances import BenchUtterance
from companion.config import CompanionConfig
from companion.turn.config import TurnConfig
from companion.turn.decide import decide
from companion.turn.features import with_pause
from companion.vad.endpoint import Endpointer, SpeechPaused, SpeechResumed, UtteranceMaybeEnded
from companion.vad.silero import SileroVAD
from companion.voice.turn_end import looks_unfinished, text_vote

#: A pause ending this close to the utterance's last speech end is its final one (the VAD's end lags).
FINAL_SLACK_S = 0.5
#: Silence played after each utterance (longer than any wait).
AFTER_S = 3.0


@dataclass(frozen=True)
class Pause:
    """One pause the loop would have heard, and what each vote said about it."""

    label: str
    kind: str
    final: bool
    #: How long the child actually stayed silent (ms; the final pause: until the end of the audio).
    silence_ms: float
    probability: float
    model_ms: float
    text: str
    text_unfinished: bool | None
    looks_unfinished: bool


def pauses(utterance: BenchUtterance, vad: SileroVAD, config: CompanionConfig, model, asr) -> list[Pause]:
    """The pauses of ``utterance`` as the loop hears them (the endpointer never ends the utterance here)."""
    vad.reset()
    ep = Endpointer(vad, replace(config.vad, end_silence_ms=int(AFTER_S * 1000) + 1000))
    audio = np.concatenate([utterance.audio, np.zeros(int(AFTER_S * PIPELINE_RATE), np.float32)])
    found: list[tuple[SpeechPaused | UtteranceMaybeEnded, float | None]] = []
    for i in range(0, audio.size, 512):
        for event in ep.push(AudioFrame.of(audio[i:i + 512], PIPELINE_RATE, i / PIPELINE_RATE)):
            if isinstance(event, (SpeechPaused, UtteranceMaybeEnded)):
                if found and found[-1][1] is None and found[-1][0].utterance.speech_end == event.utterance.speech_end:
                    continue  # the same pause, heard already when it began (as the loop does)
                found.append((event, None))
            elif isinstance(event, SpeechResumed) and found and found[-1][1] is None:
                found[-1] = (found[-1][0], event.t)
    last_speech = utterance.speech_end_s if utterance.speech_end_s is not None else utterance.seconds
    out = []
    for event, resumed in found:
        utt = event.utterance
        guess = model.predict(with_pause(utt.audio, event.tail, config.turn.complete_ms / 1000))
        text = asr.transcribe_sync(utt.audio).text
        final = resumed is None and utt.speech_end >= last_speech - FINAL_SLACK_S
        silence = ((resumed if resumed is not None else audio.size / PIPELINE_RATE) - utt.speech_end) * 1000
        out.append(Pause(utterance.label, utterance.kind or "", final, round(silence, 1), guess.probability,
                         guess.model_ms, text, text_vote(text), looks_unfinished(text)))
    return out


def _wait(p: Pause, turn: TurnConfig, config: CompanionConfig, votes: str) -> int:
    probability = None if votes == "text" else p.probability
    text = None if votes == "model" else p.text_unfinished
    return decide(turn if votes != "text" else None, probability, text, looks_unfinished=p.looks_unfinished,
                  silence_ms=config.vad.end_silence_ms, unfinished_hold_ms=config.voice.unfinished_hold_ms).wait_ms


def summarise(found: list[Pause], config: CompanionConfig) -> dict:
    """Early ends and end waits for each vote: the model, the transcript (the silence rule), both."""
    turn, early = config.turn, config.vad.early_end_ms
    inner = [p for p in found if not p.final]
    finals = [p for p in found if p.final]
    out: dict = {"pauses_inside": len(inner), "final_pauses": len(finals),
                 "utterances_without_final_pause": len({p.label for p in found} - {p.label for p in finals}),
                 "model_ms": {"median": round(statistics.median([p.model_ms for p in found]), 1) if found else None,
                              "p95": percentile([p.model_ms for p in found], 0.95)}}
    for votes in ("model", "text", "model+text"):
        early_ends = [p for p in inner if p.silence_ms > _wait(p, turn, config, votes)]
        waits = [max(_wait(p, turn, config, votes), early + (p.model_ms if votes != "text" else 0)) for p in finals]
        out[votes] = {
            "early_end_rate": round(len(early_ends) / len(inner), 3) if inner else None,
            "early_ends": sorted({p.label for p in early_ends}),
            "end_wait_ms": {"p50": percentile(waits, 0.5), "p95": percentile(waits, 0.95)},
            "end_wait_by_kind": {k: percentile([w for w, p in zip(waits, finals) if p.kind == k], 0.5)
                                 for k in sorted({p.kind for p in finals})},
        }
    out["model_says_finished"] = {
        "at_the_end": round(sum(p.probability >= turn.threshold for p in finals) / len(finals), 3) if finals else None,
        "inside": round(sum(p.probability >= turn.threshold for p in inner) / len(inner), 3) if inner else None}
    return out


def run(config: CompanionConfig, cache, utterances: list[BenchUtterance], model, asr) -> dict:
    """``utterances``: the bench's turn-taking set (``bench.loop.utterance_set``)."""
    vad = SileroVAD(cache.get(config.vad.model).path / "silero_vad_v6.onnx")
    started = time.perf_counter()
    found = [p for u in utterances for p in pauses(u, vad, config, model, asr)]
    figures = summarise(found, config)
    figures.update({"utterances": len(utterances), "seconds": round(time.perf_counter() - started, 1),
                    "settings": {"threshold": config.turn.threshold, "complete_ms": config.turn.complete_ms,
                                 "unsure_ms": config.turn.unsure_ms, "incomplete_ms": config.turn.incomplete_ms,
                                 "silence_rule_ms": config.vad.end_silence_ms,
                                 "unfinished_hold_ms": config.voice.unfinished_hold_ms},
                    "pauses": [vars(p) for p in found]})
    return figures


def format_report(f: dict) -> str:
    lines = [f"{f['utterances']} utterances: {f['pauses_inside']} pauses inside sentences, {f['final_pauses']} "
             f"final pauses; the model {f['model_ms']['median']} ms a call (p95 {f['model_ms']['p95']})"]
    names = {"model": "model alone", "text": "silence rule", "model+text": "model + transcript"}
    for votes, name in names.items():
        v = f[votes]
        lines.append(f"{name:20s} early ends {v['early_end_rate']} ({len(v['early_ends'])}), end wait p50 "
                     f"{v['end_wait_ms']['p50']} ms, p95 {v['end_wait_ms']['p95']} ms; by kind {v['end_wait_by_kind']}")
    m = f["model_says_finished"]
    lines.append(f"the model says finished at {m['at_the_end']} of final pauses and {m['inside']} of pauses inside")
    return "\n".join(lines)
