"""``companion bench``: the whole voice loop, timed on a fixed set of utterances.

The loop runs exactly as the robot runs it (simulated microphone paced in real time,
simulated speaker, the real default models, a throw-away memory). Every figure is
measured, none is asserted: the targets are printed beside the figures.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import jiwer
import psutil

from companion.audio.files import resample
from companion.audio.frames import PIPELINE_RATE
from companion.audio.sources import Segment
from companion.bench.aligned_speech import WordAligner, split_speech
from companion.bench.turns import match_turns, percentile, turn_figures
from companion.bench.utterances import (BenchUtterance, generated, generated_lines, paused, recordings, short,
                                        turn_taking_lines)
from companion.brain.conversation import persona_of
from companion.config import CompanionConfig
from companion.models.cache import ModelCache

#: The issue's targets, printed beside the figures.
TARGETS = {"ttfa_ms.p50": 600, "ttfa_ms.p95": 1000, "llm.ttft_ms": 150, "rss_mb": 1500, "idle_cpu_pct": 10,
           "ready_s": 10, "turn.cut_in_rate": 0.02}
#: Assumed cloud price (USD per 1,000 tokens, prompt and reply alike) for the cost comparison.
DEFAULT_CLOUD_PRICE = 0.002

_WORDS = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
                        jiwer.ReduceToListOfListOfWords()])


def _share(total: int, part: int) -> float | None:
    return round(part / total, 3) if total else None


def _median(values: list[float], digits: int = 1) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), digits) if values else None


def _wer(pairs: list[tuple[str, str]]) -> float | None:
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return None
    return round(jiwer.wer([r for r, _ in pairs], [h or "" for _, h in pairs], reference_transform=_WORDS,
                           hypothesis_transform=_WORDS), 3)


def utterance_set(models, audio_dir: Path | None, limit: int | None,
                  whisper_dir: Path | None = None) -> tuple[list[BenchUtterance], dict, dict]:
    """Recordings (``audio_dir``; None: the ones the project carries), generated lines and the turn-taking
    set (paused sentences, short answers); also the TTS's own figures. ``whisper_dir``: the Whisper folder
    whose word timestamps cut a paused line spoken whole (None: its halves are spoken separately)."""
    recorded, refs = recordings(audio_dir, models.vad_path)
    synth = []

    def speak(text: str):
        speech = models.tts.synthesize_sync(text)
        synth.append((speech.synth_ms, speech.samples.size / speech.rate))
        return resample(speech.samples, speech.rate, PIPELINE_RATE)

    lines = generated_lines()
    taking = turn_taking_lines()
    paused_lines, short_lines = list(taking.paused), list(taking.short)
    if limit is not None:  # keep every kind: about a third recordings, the rest shared in turn
        kept = recorded[: max(1, limit // 3)] if recorded else []
        cut_short = {u.source for u in recorded[len(kept):]}
        recorded = [replace(u, partial=u.source in cut_short) for u in kept]
        counts = [0, 0, 0]
        for i in range(max(0, limit - len(recorded))):
            counts[i % 3] += 1
        lines, paused_lines, short_lines = lines[:counts[0]], paused_lines[:counts[1]], short_lines[:counts[2]]
    aligner = WordAligner(whisper_dir) if paused_lines and whisper_dir is not None else None
    split = (lambda first, second: split_speech(speak, aligner, first, second)) if aligner is not None else None
    utterances = (recorded + generated(speak, lines) + paused(speak, paused_lines, split=split)
                  + short(speak, short_lines))
    tts = {"rtf": _median([ms / 1000 / s for ms, s in synth], 3),
           "synth_ms_median": _median([ms for ms, _ in synth])}
    return utterances, refs, tts


def run(config: CompanionConfig, cache: ModelCache, *, audio_dir: Path | None = None, limit: int | None = None,
        service: bool = True, config_path: Path | None = None, llm_isolated: bool = True,
        cloud_price_per_1k: float = DEFAULT_CLOUD_PRICE, speakers: bool = True) -> dict:
    from companion.memory.store import MemoryStore
    from companion.voice.runtime import load_voice_models
    from companion.voice.simulate import run_simulation_sync

    proc = psutil.Process()
    started = time.perf_counter()
    models = load_voice_models(config, cache)
    load_s = time.perf_counter() - started
    try:
        utterances, refs, tts = utterance_set(models, audio_dir, limit, cache.get(config.asr.model).path)
        with tempfile.TemporaryDirectory(prefix="companion-bench-") as tmp:
            segments = [Segment(u.audio, label=u.label) for u in utterances]
            memory = MemoryStore(Path(tmp) / "data")
            if speakers and models.speaker is not None:  # two children known by voice: the encoder runs every turn
                from companion.bench.speakers import enrol_bench_children

                enrol_bench_children(models, memory, "Bench")
            cpu0, wall0 = proc.cpu_times(), time.perf_counter()
            result = run_simulation_sync(models, config, segments, Path(tmp) / "out", child="Bench", memory=memory)
            cpu1, wall1 = proc.cpu_times(), time.perf_counter()
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    finally:
        models.close()

    # Which utterance each turn answered: its speech ended inside that segment's playback.
    turns = match_turns(result.records, result.log, utterances)
    figures = _figures(config, turns, utterances, refs, tts, load_s,
                       cpu_s=(cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), wall_s=wall1 - wall0,
                       peak_rss_mb=peak_rss_mb, cloud_price_per_1k=cloud_price_per_1k)
    figures["turn"] = turn_figures(result.records, result.events, result.log, utterances)
    from companion.bench.speakers import speaker_figures

    figures["speakers"] = speaker_figures(result.records)
    if llm_isolated:
        from companion.bench import llm

        isolated = llm.run(config, cache, runs=1)
        figures["llm"].update({"tok_s": isolated["tok_s"], "ttft_ms_isolated": isolated["ttft_ms"],
                               "ratio_vs_llama_cpp": isolated["ratio_vs_llama_cpp"],
                               "llama_cpp_tok_s": (isolated["llama_cpp"] or {}).get("tok_s")})
    if service:
        from companion.bench.service import measure

        svc = measure(config_path)
        figures.update({"ready_s": svc["ready_s"], "idle_cpu_pct": svc["idle_cpu_pct"],
                        "idle_rss_mb": svc["idle_rss_mb"]})
    figures["targets"] = TARGETS
    return figures


def _figures(config: CompanionConfig, turns, utterances, refs, tts, load_s: float, *, cpu_s: float, wall_s: float,
             peak_rss_mb: float, cloud_price_per_1k: float) -> dict:
    records = [r for r, _ in turns]
    timed = [r for r in records if r.timings.ttfa_ms is not None]
    ttfa = [r.timings.ttfa_ms for r in timed]

    def stage(a: str, b: str) -> float | None:
        return _median([r.timings.trace[b] - r.timings.trace[a] for r in timed
                        if r.timings.trace.get(a) is not None and r.timings.trace.get(b) is not None])

    # Word error rate: a generated utterance's turns joined in order (a cut-in splits a paused sentence
    # in two), against its line; a recording's turns (of all its pieces) joined in order.
    by_line: dict[int, list[str]] = {}
    by_source: dict[str, list[str]] = {}
    for r, u in turns:
        if u is not None:
            by = by_line.setdefault(id(u), []) if u.source == "generated" else by_source.setdefault(u.source, [])
            by.append(r.heard)
    gen_pairs = [(u.reference, " ".join(by_line[id(u)])) for u in utterances if id(u) in by_line]
    # Only recordings whose every piece is in the set (``--limit`` may cut one short); a piece that made
    # no turn counts as words deleted.
    complete = {u.source for u in utterances} - {u.source for u in utterances if u.partial}
    rec_pairs = [(refs[s], " ".join(by_source.get(s, []))) for s in complete if s != "generated" and refs.get(s)]

    asr_rtf = [r.timings.asr_ms / 1000 / u.seconds for r, u in turns if u is not None]
    tokens = [r.tokens for r in records if r.tokens]
    n = max(1, len(records))
    prompt_tokens = sum(t.get("prompt", 0) for t in tokens)
    reply_tokens = sum(t.get("reply", 0) for t in tokens)
    cores = psutil.cpu_count() or 1
    cpu_per_turn = cpu_s / n
    wh_per_turn = config.hardware.power_watts * cpu_per_turn / cores / 3600
    return {
        "machine": {"cores": cores, "hardware_profile": config.hardware.profile,
                    "power_watts": config.hardware.power_watts},
        "models": {"asr": config.asr.model, "asr_window": config.asr.window, "llm": config.llm.model,
                   "tts": persona_of(config).voice},
        "utterances": len(utterances),
        "utterance_s": {"min": round(min(u.seconds for u in utterances), 2),
                        "max": round(max(u.seconds for u in utterances), 2)},
        "turns": len(records),
        "turns_answered": len(timed),
        "unmatched_utterances": len(utterances) - len({id(u) for _, u in turns if u is not None}),
        "load_s": round(load_s, 2),
        "ttfa_ms": {"p50": percentile(ttfa, 0.50), "p95": percentile(ttfa, 0.95), "max": percentile(ttfa, 1.0),
                    "all": [round(t) for t in ttfa]},
        "stages_ms": {
            "speculative_start": _median([r.timings.trace.get("asr_start") for r in timed]),
            "end_confirmed": _median([r.timings.trace.get("end_confirmed") for r in timed]),
            "asr": stage("asr_start", "asr_end"),
            "llm_first_token": stage("asr_end", "first_token"),
            "first_clause": stage("first_token", "first_clause"),
            "tts_first_chunk": stage("tts_start", "tts_end"),
            "first_audio": _median(ttfa),
        },
        "asr": {"rtf": _median(asr_rtf, 3), "wer": _wer(gen_pairs + rec_pairs), "wer_generated": _wer(gen_pairs),
                "wer_recorded": _wer(rec_pairs), "ms_median": _median([r.timings.asr_ms for r in records])},
        "llm": {"ttft_ms": _median([r.timings.llm_first_token_ms for r in timed]),
                "tok_s_in_loop": _median([t.get("tok_s") for t in tokens]),
                "prompt_tokens_median": _median([t.get("prompt") for t in tokens if t.get("prompt")]),
                "reply_tokens_median": _median([t.get("reply") for t in tokens if t.get("reply")]),
                # Share of prompt-lookup draft tokens the sampler kept, over the turns (``[llm] draft_tokens``).
                "draft_kept": _share(sum(t.get("drafted") or 0 for t in tokens),
                                     sum(t.get("kept_drafts") or 0 for t in tokens))},
        "tts": {"first_chunk_ms": _median([r.timings.tts_first_chunk_ms for r in timed]), **tts},
        "rss_mb": round(peak_rss_mb, 1),
        "cpu_s_per_turn": round(cpu_per_turn, 2),
        "wh_per_turn": round(wh_per_turn, 5),
        "cost": {"api_usd_per_turn": 0.0, "tokens_per_turn": round((prompt_tokens + reply_tokens) / n, 1),
                 "cloud_usd_per_1k_tokens": cloud_price_per_1k,
                 "cloud_usd_per_turn": round((prompt_tokens + reply_tokens) / n / 1000 * cloud_price_per_1k, 6),
                 "cloud_usd_per_1000_turns": round((prompt_tokens + reply_tokens) / n * cloud_price_per_1k, 3)},
        "wall_s": round(wall_s, 1),
        "example_turn": _example(timed),
        "per_turn": [{"utterance": u.label if u is not None else None, "kind": u.kind if u is not None else None,
                      "heard": r.heard, "reply": r.reply, "ttfa_ms": r.timings.ttfa_ms, "trace": r.timings.trace,
                      "turn_end": r.turn_end, "tokens": r.tokens}
                     for r, u in turns],
    }


def _example(timed) -> dict | None:
    """Of the turns the model answered, the one with the median ttfa: what it heard, said, and its stage
    timeline (for the plot). A turn answered with a fixed line (a safety redirect) has no model stage to show;
    with none answered by the model, the median of all."""
    pool = [r for r in timed if r.timings.trace.get("first_token") is not None] or timed
    if not pool:
        return None
    r = sorted(pool, key=lambda r: r.timings.ttfa_ms)[len(pool) // 2]
    return {"heard": r.heard, "reply": r.reply, "trace": r.timings.trace}


def format_report(f: dict) -> str:
    t, st, a, l, s, tu = f["ttfa_ms"], f["stages_ms"], f["asr"], f["llm"], f["tts"], f["turn"]
    tg = f["targets"]

    def mark(value, target, lower_is_better=True) -> str:
        if value is None:
            return "(not measured)"
        ok = value <= target if lower_is_better else value >= target
        return f"(target {target}: {'met' if ok else 'NOT met'})"

    m = tu["model_ms"]
    turn_model = (f"end-of-turn model {m['median']} ms median, max {m['max']} ({m['calls']} calls)" if m["calls"]
                  else "end-of-turn model not called (off: the silence rule)")
    lines = [
        f"{f['turns_answered']} answered turns of {f['utterances']} utterances "
        f"({f['utterance_s']['min']}-{f['utterance_s']['max']} s); models {f['models']['asr']} "
        f"(window {f['models']['asr_window']}), {f['models']['llm']}; {f['machine']['cores']} cores",
        f"ttfa             p50 {t['p50']} ms {mark(t['p50'], tg['ttfa_ms.p50'])}, "
        f"p95 {t['p95']} ms {mark(t['p95'], tg['ttfa_ms.p95'])}, max {t['max']} ms",
        f"stages (median, ms from the end of speech): turn begun at {st['speculative_start']}, end confirmed at "
        f"{st['end_confirmed']}; ASR {st['asr']}, first token +{st['llm_first_token']}, first clause "
        f"+{st['first_clause']}, TTS first chunk {st['tts_first_chunk']}; first audio {st['first_audio']}",
        f"ASR              RTF {a['rtf']}, WER {a['wer']} (generated {a['wer_generated']}, recorded "
        f"{a['wer_recorded']}), {a['ms_median']} ms median",
        f"LLM              TTFT {l['ttft_ms']} ms in the loop {mark(l['ttft_ms'], tg['llm.ttft_ms'])}; "
        f"{l.get('tok_s')} tokens/s alone, {l['tok_s_in_loop']} in the loop; llama.cpp ratio "
        f"{l.get('ratio_vs_llama_cpp') or 'n/a (llama-cpp-python not installed)'}",
        f"TTS              first chunk {s['first_chunk_ms']} ms, RTF {s['rtf']}",
        f"turn end         cut-ins {tu['cut_ins']} of {tu['paused_n']} paused sentences, rate {tu['cut_in_rate']} "
        f"{mark(tu['cut_in_rate'], tg['turn.cut_in_rate'])}; end confirmed p50 {tu['end_wait_ms']['p50']} ms, "
        f"p95 {tu['end_wait_ms']['p95']} ms after speech; short answers ttfa p50 {tu['short_ttfa_ms']} ms; "
        f"{turn_model}; decided by {', '.join(f'{k} {v}' for k, v in tu['decided_by'].items()) or 'none'}",
        f"memory           peak RSS {f['rss_mb']} MB {mark(f['rss_mb'], tg['rss_mb'])}",
    ]
    sp = f.get("speakers")
    if sp:
        lines.append(f"who is talking   {sp['turns']} turns identified ({', '.join(f'{k} {v}' for k, v in sp['by'].items())}); "
                     f"the encoder's answer came after the transcript's in {sp['turns_waiting_on_it']} turns "
                     f"(at most {sp['after_asr_ms_max']} ms)")
    if "ready_s" in f:
        lines.append(f"service          start to READY {f['ready_s']} s {mark(f['ready_s'], tg['ready_s'])}; "
                     f"idle CPU {f['idle_cpu_pct']} % of a core {mark(f['idle_cpu_pct'], tg['idle_cpu_pct'])}; "
                     f"idle RSS {f['idle_rss_mb']} MB")
    c = f["cost"]
    lines.append(f"energy and cost  {f['cpu_s_per_turn']} CPU-s per turn, ~{f['wh_per_turn']} Wh per turn at "
                 f"{f['machine']['power_watts']} W; API cost $0; the same {c['tokens_per_turn']} tokens a turn at "
                 f"${c['cloud_usd_per_1k_tokens']}/1k tokens would cost ${c['cloud_usd_per_1000_turns']} per 1,000 turns")
    return "\n".join(lines)
