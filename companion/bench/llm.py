"""``companion bench llm``: time to first token, decode speed and memory of the language model.

The figures are medians over several runs after one warm-up run, with greedy
decoding and a fixed token budget so runs are comparable. When llama-cpp-python
is installed (the ``bench`` extra) the same prompts run through llama.cpp on the
same GGUF file and the ratio of decode speeds is reported.
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import replace
from pathlib import Path

import psutil

from companion.config import CompanionConfig
from companion.llm.generate import Generator
from companion.llm.sampling import SamplingParams
from companion.llm.tokenizer import ChatMessage
from companion.models.cache import ModelCache

PROMPTS = (
    "Hello! What is your name?",
    "Why is the sky blue?",
    "Can you tell me a short story about a dragon?",
    "I lost my tooth today!",
    "What do cats like to eat?",
)


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


def run(config: CompanionConfig, cache: ModelCache, *, runs: int = 3, max_new_tokens: int = 48,
        genai_model: Path | None = None) -> dict:
    prepared = cache.get(config.llm.model)
    from companion.brain.conversation import persona_of

    system = ChatMessage("system", persona_of(config).system_prompt())
    # One token per pass, comparable with llama.cpp's figure; the drafted figure is measured apart.
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, repetition_penalty=1.0, draft_tokens=0)

    rss_before = _rss_mb()
    t0 = time.perf_counter()
    generator = Generator(prepared.path / "onnx", config.llm.runtime())
    load_s = time.perf_counter() - t0
    prompts = [generator.tokenizer.encode_chat([system, ChatMessage("user", p)]) for p in PROMPTS]

    # Cold: nothing cached, the whole prompt is prefilled.
    cold = generator.generate(prompts[0], replace(params, max_new_tokens=1))
    generator.prefix_cache.clear()
    t0 = time.perf_counter()
    prefix_tokens = generator.warm([system])
    warm_s = time.perf_counter() - t0
    generator.generate(prompts[0], params)  # warm-up

    def measure(sampling: SamplingParams, rounds: int) -> list:
        results = []
        for _ in range(rounds):
            for ids in prompts:
                generator.prefix_cache.clear()
                generator.warm([system])  # only the persona prefix is cached, as at the start of a turn
                results.append(generator.generate(ids, sampling))
        return results

    plain = measure(params, runs)
    ttft = [r.first_token_s * 1000 for r in plain]
    tok_s = [r.decode_tokens_per_s for r in plain if r.decode_tokens_per_s]
    # Prompt-lookup drafting as the loop uses it (``[llm] draft_tokens``): the same prompts, one round.
    drafted = measure(replace(params, draft_tokens=config.llm.draft_tokens), 1) if config.llm.draft_tokens else []
    drafted_tok_s = [r.decode_tokens_per_s for r in drafted if r.decode_tokens_per_s]
    words_vote = {"one_pass": _words_vote(generator, system, runs, merged=True),
                  "apart": _words_vote(generator, system, runs, merged=False)}
    checked, kept = sum(r.drafted for r in drafted), sum(r.accepted_drafts for r in drafted)
    llm_rss = _rss_mb() - rss_before
    figures = {
        "model": config.llm.model,
        "quantize": prepared.record.get("quantize"),
        "providers": generator.model.providers,
        "threads": config.llm.threads,
        "spin": config.llm.spin,
        "runs": runs * len(prompts),
        "load_s": round(load_s, 2),
        "prefix_tokens": prefix_tokens,
        "prefix_warm_ms": round(warm_s * 1000, 1),
        "ttft_ms": round(statistics.median(ttft), 1),
        "ttft_ms_p95": round(sorted(ttft)[int(0.95 * (len(ttft) - 1))], 1),
        "ttft_cold_ms": round(cold.first_token_s * 1000, 1),
        "tok_s": round(statistics.median(tok_s), 1),
        "draft_tokens": config.llm.draft_tokens,
        "tok_s_drafted": round(statistics.median(drafted_tok_s), 1) if drafted_tok_s else None,
        "draft_kept": round(kept / checked, 3) if checked else None,
        "words_vote_to_first_token_ms": words_vote,
        "llm_rss_mb": round(llm_rss, 1),
        "rss_mb": round(_peak_rss_mb(), 1),
        "llama_cpp": None,
        "ratio_vs_llama_cpp": None,
        "onnxruntime_genai": None,
    }
    generator.close()
    gguf = next((p for p in prepared.path.glob("*.gguf")), None)
    if gguf is not None:
        llama = _llama_cpp(gguf, generator, [system], PROMPTS, runs, max_new_tokens, config.llm.threads)
        if llama is not None:
            figures["llama_cpp"] = llama
            figures["ratio_vs_llama_cpp"] = round(figures["tok_s"] / llama["tok_s"], 2)
    if genai_model is not None:
        figures["onnxruntime_genai"] = _genai(genai_model, generator, [system], PROMPTS, runs, max_new_tokens,
                                              config.llm.threads)
    return figures


def _words_vote(generator: Generator, system: ChatMessage, runs: int, *, merged: bool) -> float:
    """Median ms from the start of the turn-taking look at the child's words (``Generator.ends_here``) to
    the reply's first token, with the persona's prefix cached: ``merged``, the look feeds the whole prompt
    and the reply samples its first token from it; else it feeds the words and the reply its own pass."""
    first = SamplingParams(max_new_tokens=1, temperature=0.0, repetition_penalty=1.0, draft_tokens=0)
    times = []
    for _ in range(runs):
        for text in PROMPTS:
            messages = [system, ChatMessage("user", text)]
            words, prompt = generator.tokenizer.encode_open(messages), generator.tokenizer.encode_chat(messages)
            generator.prefix_cache.clear()
            generator.warm([system])
            t0 = time.perf_counter()
            generator.ends_here(words, prompt if merged else ())
            generator.generate(prompt, first)
            times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def _genai(model_dir: Path, generator: Generator, system, prompts, runs: int, max_new_tokens: int,
           threads: int) -> dict | None:
    """The same prompts through onnxruntime-genai (a model made by its own builder), for comparison."""
    try:
        import onnxruntime_genai as og
    except ImportError:
        return None
    cfg = og.Config(str(model_dir))
    cfg.clear_providers()
    model = og.Model(cfg)
    prompt_ids = [generator.tokenizer.encode_chat([*system, ChatMessage("user", p)]) for p in prompts]

    def one(ids: list[int]) -> tuple[float, float | None]:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + max_new_tokens, do_sample=False)
        gen = og.Generator(model, params)
        t0 = time.perf_counter()
        gen.append_tokens(ids)
        first, n = None, 0
        while not gen.is_done() and n < max_new_tokens:
            gen.generate_next_token()
            n += 1
            if first is None:
                first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        return first * 1000, ((n - 1) / (total - first)) if n > 1 else None

    one(prompt_ids[0])  # warm-up
    ttft, tok_s = [], []
    for _ in range(runs):
        for ids in prompt_ids:
            f, r = one(ids)
            ttft.append(f)
            if r:
                tok_s.append(r)
    return {"ttft_ms": round(statistics.median(ttft), 1), "tok_s": round(statistics.median(tok_s), 1),
            "note": "no prefix cache: the whole prompt is prefilled each time"}


def _llama_cpp(gguf: Path, generator: Generator, system, prompts, runs: int, max_new_tokens: int,
               threads: int) -> dict | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)
    texts = [generator.tokenizer.render([*system, ChatMessage("user", p)]) for p in prompts]
    llm.create_completion(texts[0], max_tokens=max_new_tokens, temperature=0.0)  # warm-up
    ttft, tok_s = [], []
    for _ in range(runs):
        for text in texts:
            t0 = time.perf_counter()
            first = None
            n = 0
            for _chunk in llm.create_completion(text, max_tokens=max_new_tokens, temperature=0.0, stream=True):
                n += 1
                if first is None:
                    first = time.perf_counter() - t0
            total = time.perf_counter() - t0
            ttft.append(first * 1000)
            if n > 1:
                tok_s.append((n - 1) / (total - first))
    return {"ttft_ms": round(statistics.median(ttft), 1), "tok_s": round(statistics.median(tok_s), 1)}


def format_table(figures: dict) -> str:
    lines = [
        f"model            {figures['model']} ({figures['quantize']}, {', '.join(figures['providers'])}, "
        f"{figures['threads']} threads, spinning {'on' if figures['spin'] else 'off'})",
        f"load             {figures['load_s']} s; persona prefix {figures['prefix_tokens']} tokens in "
        f"{figures['prefix_warm_ms']} ms",
        f"TTFT             {figures['ttft_ms']} ms median, {figures['ttft_ms_p95']} ms p95 (persona prefix cached); "
        f"{figures['ttft_cold_ms']} ms cold",
        f"decode           {figures['tok_s']} tokens/s (median of {figures['runs']} runs)",
        f"words' vote      to the first token {figures['words_vote_to_first_token_ms']['one_pass']} ms in one pass, "
        f"{figures['words_vote_to_first_token_ms']['apart']} ms apart",
        f"memory           {figures['llm_rss_mb']} MB for the LLM; process peak RSS {figures['rss_mb']} MB",
    ]
    if figures["llama_cpp"]:
        lc = figures["llama_cpp"]
        lines.append(f"llama.cpp        {lc['tok_s']} tokens/s, TTFT {lc['ttft_ms']} ms; "
                     f"ratio onnx/llama.cpp {figures['ratio_vs_llama_cpp']}")
    else:
        lines.append("llama.cpp        not measured (pip install 'companion[bench]' to compare)")
    if figures["onnxruntime_genai"]:
        g = figures["onnxruntime_genai"]
        lines.append(f"onnxruntime-genai {g['tok_s']} tokens/s, TTFT {g['ttft_ms']} ms ({g['note']})")
    return "\n".join(lines)
