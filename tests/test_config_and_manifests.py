from pathlib import Path

import pytest

from companion.config import CompanionConfig, load_config
from companion.errors import ConfigError, ModelError
from companion.models.manifest import load_manifests, parse_manifest, select, default_for_role
from companion.paths import configs_dir, manifests_dir

GOOD = """
name = "m"
role = "tts"
licence = "MIT"
[[packages]]
name = "pkg"
version = "1.0"
sha256 = "%s"
[[artifacts]]
file = "voice.onnx"
parts = ["pkg/data/voice.onnx"]
sha256 = "%s"
""" % ("a" * 64, "b" * 64)


def test_repository_config_loads_and_matches_defaults_types():
    config = load_config(configs_dir() / "companion.toml")
    assert isinstance(config, CompanionConfig)
    assert config.llm.threads >= 1 and config.persona.use == "pip"
    assert config.memory.retention_days > 0 and config.vad.end_silence_ms > 0


@pytest.mark.parametrize("text,fragment", [
    ("[llm]\nthreds = 2\n", "threds"),
    ("[llm]\nthreads = 'two'\n", "threads"),
    ("[llm]\ntemperature = -1.0\n", "temperature"),
    ("[llm\n", "TOML"),
    ("[persona]\nname = 3\n", "name"),
])
def test_broken_config_is_a_coded_error(tmp_path, text, fragment):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.code == "CONFIG_INVALID"
    assert fragment in str(info.value)


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.toml")


def test_repository_manifests_are_complete():
    manifests = load_manifests(manifests_dir())
    assert {m.role for m in manifests.values()} == {"llm", "asr", "tts", "vad", "encoder", "turn", "speaker"}
    for role in ("llm", "asr", "tts", "vad"):
        default_for_role(manifests, role)
    for m in manifests.values():
        assert m.licence
        assert all(len(a.sha256) == 64 for a in m.artifacts)
        assert all(p.installed or p.sha256 for p in m.packages)
    llm = default_for_role(manifests, "llm")
    assert llm.convert.recipe == "llm-onnx"
    assert "gemma" not in llm.name  # the Gemma 3 270M on PyPI is a base model: it cannot chat
    # Both ASR models are prepared by a plain `companion models prepare`.
    assert {m.name for m in select(manifests, None) if m.role == "asr"} == {"whisper-base", "whisper-tiny-en"}
    assert not list(Path(manifests_dir()).glob("*.onnx")) and not list(Path(manifests_dir()).glob("*.gguf"))


def test_manifest_parses_and_rejects_bad_ones():
    m = parse_manifest(GOOD)
    assert m.name == "m" and m.artifacts[0].parts == ("pkg/data/voice.onnx",)
    for bad in (GOOD.replace('role = "tts"', 'role = "dance"'),
                GOOD.replace('"' + "b" * 64 + '"', '"abc"'),
                GOOD.replace('version = "1.0"\n', ""),
                GOOD.replace('file = "voice.onnx"', 'file = "../x"'),
                "name = 'x'"):
        with pytest.raises(ModelError) as info:
            parse_manifest(bad)
        assert info.value.code == "MODEL_MANIFEST_INVALID"


def test_unknown_model_name_is_coded():
    with pytest.raises(ModelError) as info:
        select(load_manifests(manifests_dir()), ["no-such-model"])
    assert info.value.code == "MODEL_UNKNOWN"


def test_hardware_profiles_are_detected_and_the_config_file_wins(tmp_path):
    from companion.hardware import detect, profile_defaults

    assert detect("Raspberry Pi 5 Model B Rev 1.0") == "raspberry-pi-5"
    assert detect("NVIDIA Jetson Orin Nano Developer Kit") == "jetson-orin-nano"
    assert detect("") == "generic-x86"
    pi = profile_defaults("raspberry-pi-5")
    assert pi["llm"]["threads"] == 3 and pi["asr"]["model"] == "whisper-tiny-en"
    jetson = profile_defaults("jetson-orin-nano")
    assert jetson["llm"]["providers"][-1] == "CPUExecutionProvider"  # CPU is always the last fallback
    path = tmp_path / "c.toml"
    path.write_text('[hardware]\nprofile = "raspberry-pi-5"\n[llm]\nthreads = 1\n')
    config = load_config(path)
    assert config.hardware.profile == "raspberry-pi-5" and config.asr.model == "whisper-tiny-en"
    assert config.llm.threads == 1  # the file wins over the profile
    path.write_text('[hardware]\nprofile = "toaster"\n')
    with pytest.raises(ConfigError):
        load_config(path)


def test_llm_settings_take_their_defaults_from_one_place():
    """`[llm]` repeats no default: sampling ones are `SamplingParams`', runtime ones `RuntimeOptions`'."""
    import dataclasses
    import tomllib

    from companion.config import LLMConfig
    from companion.llm.sampling import SamplingParams
    from companion.llm.session import RuntimeOptions

    assert LLMConfig().sampling() == SamplingParams()
    assert LLMConfig().runtime() == RuntimeOptions()
    assert (SamplingParams().max_new_tokens, SamplingParams().temperature, SamplingParams().top_k) == (80, 0.6, 40)
    assert RuntimeOptions().spin is False  # the loop shares the cores with ASR and TTS
    # The shipped config file writes some of them out for people to read; it must say the same.
    shipped = tomllib.loads((configs_dir() / "companion.toml").read_text(encoding="utf-8"))["llm"]
    sampling = {f.name for f in dataclasses.fields(SamplingParams)}
    for key in sampling & shipped.keys():
        assert shipped[key] == getattr(SamplingParams(), key), f"configs/companion.toml [llm] {key}"


def test_int4_block_size_has_one_default():
    from companion.llm.export import INT4_BLOCK_SIZE
    from companion.models.manifest import ConvertRecipe

    assert ConvertRecipe().block_size == INT4_BLOCK_SIZE == 64
    llms = [m for m in load_manifests(manifests_dir()).values() if m.convert.recipe == "llm-onnx"]
    assert llms and all(m.convert.block_size == INT4_BLOCK_SIZE for m in llms)
    text = GOOD.replace('role = "tts"', 'role = "llm"') + '[convert]\nrecipe = "llm-onnx"\n'
    assert parse_manifest(text).convert.block_size == INT4_BLOCK_SIZE  # a manifest that names none


def test_a_comment_or_the_default_flag_does_not_make_a_prepared_model_stale(tmp_path):
    from companion.models.manifest import load_manifests
    from companion.paths import manifests_dir

    src = manifests_dir() / "whisper-base.toml"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / src.name).write_text(src.read_text())
    edited = src.read_text().replace("default = true", "default = false")
    (tmp_path / "b" / src.name).write_text("# a new comment\n" + edited.replace('description = "', 'description = "x '))
    a, b = load_manifests(tmp_path / "a")["whisper-base"], load_manifests(tmp_path / "b")["whisper-base"]
    assert a.digest == b.digest and a.default != b.default
    (tmp_path / "b" / src.name).write_text(edited.replace('recipe = "ctranslate2-whisper"', 'recipe = "none"'))
    assert load_manifests(tmp_path / "b")["whisper-base"].digest != a.digest
