"""`companion models import-llm` + `companion chat` end to end on the tiny generated checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _companion(args, env, stdin=""):
    return subprocess.run([sys.executable, "-m", "companion", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=600)


def test_import_any_checkpoint_then_chat_with_it(tiny_checkpoint, tmp_path):
    env = {**os.environ, "COMPANION_MODELS_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    imported = _companion(["models", "import-llm", str(tiny_checkpoint), "--name", "tiny", "--quantize", "none"], env)
    assert imported.returncode == 0, imported.stderr
    listed = {r["name"]: r for r in json.loads(_companion(["models", "list", "--json"], env).stdout)}
    assert listed["tiny"]["state"] == "imported"
    assert _companion(["models", "verify", "tiny"], env).returncode == 0

    config = tmp_path / "c.toml"
    # The tiny model's tokenizer spends ~1,500 tokens on the persona prompt (the real Qwen one ~540).
    config.write_text('[llm]\nmodel = "tiny"\nmax_new_tokens = 5\ntemperature = 0.0\n[memory]\nprompt_tokens = 4096\n')
    chat = _companion(["--config", str(config), "chat", "--json", "--data-dir", str(tmp_path / "data")], env,
                      stdin="hello there\n\nthe cat sat\n")
    assert chat.returncode == 0, chat.stderr
    replies = [json.loads(line) for line in chat.stdout.splitlines()]
    assert [r["heard"] for r in replies] == ["hello there", "the cat sat"]  # the blank line is skipped
    assert all(r["llm"]["reply_tokens"] <= 5 for r in replies)
    # The second turn reuses the KV of the first (system prompt + first exchange).
    assert replies[1]["llm"]["cached_tokens"] > replies[0]["llm"]["cached_tokens"] > 0


def test_chat_without_prepared_model_says_how_to_prepare(tmp_path):
    env = {**os.environ, "COMPANION_MODELS_DIR": str(tmp_path / "empty")}
    proc = _companion(["chat"], env, stdin="hi\n")
    assert proc.returncode == 2
    assert "MODEL_NOT_PREPARED" in proc.stderr and "companion models prepare" in proc.stderr


def test_import_of_a_missing_source_is_coded(tmp_path):
    env = {**os.environ, "COMPANION_MODELS_DIR": str(tmp_path / "cache")}
    proc = _companion(["models", "import-llm", str(tmp_path / "nope"), "--name", "x"], env)
    assert proc.returncode == 2 and "MODEL_PACKAGE_MISSING" in proc.stderr


def test_import_llm_quantises_with_the_same_block_size_as_the_manifests(tmp_path, monkeypatch):
    """The exporter is stood in for (nothing is exported); its command line is what is checked."""
    import pytest

    from companion.errors import ModelError
    from companion.llm.export import INT4_BLOCK_SIZE
    from companion.models import prepare as prep
    from companion.models.cache import ModelCache

    commands = []

    class Exporter:
        returncode = 1

        def __init__(self, cmd, **_kwargs):
            commands.append(cmd)
            self.stderr = iter(["[export] loading GGUF\n"])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(prep.subprocess, "Popen", Exporter)
    cache = ModelCache(tmp_path / "cache")
    monkeypatch.setattr(cache, "check_free_space", lambda *_a: None)
    (tmp_path / "m.gguf").write_bytes(b"x")
    with pytest.raises(ModelError):
        prep.import_llm(str(tmp_path / "m.gguf"), "m", cache)
    cmd = commands[0]
    assert cmd[cmd.index("--quantize") + 1] == "int4"
    assert cmd[cmd.index("--block-size") + 1] == str(INT4_BLOCK_SIZE)
