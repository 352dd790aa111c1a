"""Shared fixtures: a tiny generated chat model (seconds) and the real prepared models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from companion.paths import recordings_dir

#: The workplace's shared folder beside the repository. Only its evaluation sets (``eval/*.jsonl``) are read,
#: through ``shared_eval``: a clone alone does not have them.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: Real recorded speech the project carries (faster-whisper's test data, MIT): jfk.flac, hotwords.mp3,
#: stereo_diarization.wav, and the README with their reference transcripts.
RECORDINGS = recordings_dir()


def free_port() -> int:
    """A TCP port nothing listens on now (for a server the test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(proc, port: int, timeout_s: float = 60.0) -> None:
    """Until ``proc`` (a server the test started) accepts connections on ``port``; fails with its stderr
    if it exits or does not listen in time."""
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
            time.sleep(0.2)


def unit_exposure(unit: Path, tmp_path: Path) -> float:
    """A systemd unit of ``systemd/``, checked by ``systemd-analyze verify`` (its ExecStart pointed at this
    checkout's own command, which verify requires to exist), and its ``security --offline`` exposure."""
    import subprocess
    import sys

    copy = tmp_path / unit.name
    exe = Path(sys.executable).with_name("companion")
    copy.write_text(unit.read_text().replace("/opt/companion/.venv/bin/companion", str(exe)))
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(copy)], capture_output=True,
                              text=True)
    return float(security.stdout.split(f"Overall exposure level for {unit.name}:")[1].split()[0])


def shared_eval(name: str) -> Path:
    """``../shared/eval/<name>``. Where it is absent the test is skipped, saying so; in CI (``CI=true``),
    which has the shared folder, its absence is a failure rather than a quiet skip."""
    path = SHARED / "eval" / name
    if path.is_file():
        return path
    reason = (f"../shared/eval/{name} absent: the shared evaluation sets live beside the repository "
              f"({SHARED}), not in it")
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI has them, so this is a failure", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.shared_eval(name)``: skip (or fail in CI) before any fixture runs, so a test of a
    shared set does not prepare the real models only to find the set missing."""
    for mark in item.iter_markers("shared_eval"):
        shared_eval(*mark.args)

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "hello there little friend, how are you today?",
    "the cat sat on the mat and the dog ran in the park.",
    "why is the sky blue? because sunlight scatters in the air.",
    "robots like to talk with children about stars, animals and stories.",
] * 20


def build_tiny_checkpoint(folder: Path) -> Path:
    """A randomly initialised Qwen2-architecture chat model with a small BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"))
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(folder)
    GenerationConfig(eos_token_id=config.eos_token_id).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-ckpt"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny model exported by the product's own optimum path (fp32, so logits compare tightly)."""
    from companion.llm.export import export_llm

    out = tmp_path_factory.mktemp("tiny-onnx") / "onnx"
    export_llm(str(tiny_checkpoint), out, quantize_mode="none")
    return out


@pytest.fixture(scope="session")
def real_cache():
    """The real default models, prepared once in the shared model cache (a no-op when cached)."""
    from companion.models.cache import ModelCache
    from companion.models.manifest import load_manifests, select
    from companion.models.prepare import prepare
    from companion.paths import manifests_dir, models_cache_dir

    cache = ModelCache(models_cache_dir())
    for manifest in select(load_manifests(manifests_dir()), None):
        prepare(manifest, cache, progress=False)
    return cache


@pytest.fixture()
def offline_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return dict(os.environ)


SILERO = None


def silero_path() -> Path:
    """The Silero VAD file inside the installed faster-whisper (no model cache needed)."""
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


@pytest.fixture(scope="session")
def voice_config():
    from dataclasses import replace

    from companion.config import load_config
    from companion.paths import configs_dir

    config = load_config(configs_dir() / "companion.toml")
    return replace(config, llm=replace(config.llm, seed=1))


@pytest.fixture(scope="session")
def voice_models(real_cache, voice_config):
    from companion.voice.runtime import load_voice_models

    models = load_voice_models(voice_config, real_cache)
    yield models
    models.close()


def roomy_config():
    """The default config with a prompt budget the tiny model's tokenizer can live with: it spends ~900
    tokens on the persona prompt (the real Qwen tokenizer ~260), which would leave no room for history
    or fact cards within the default 1,024."""
    from dataclasses import replace

    from companion.config import CompanionConfig

    config = CompanionConfig()
    return replace(config, memory=replace(config.memory, prompt_tokens=4096))
