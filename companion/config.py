"""Typed configuration, loaded from one TOML file (``configs/companion.toml`` by default).

Every field has a documented default; unknown keys and wrong types are errors with
the code CONFIG_INVALID, never silently ignored. CLI flags override the file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from companion.asr.whisper import ASRConfig
from companion.errors import ConfigError
from companion.knowledge.index import KnowledgeConfig
from companion.safety.check import SafetyConfig
from companion.speaker.config import SpeakerConfig
from companion.turn.config import TurnConfig
from companion.vad.endpoint import EndpointConfig
from companion.voice.config import LoopConfig
from companion.wyoming.config import RemoteConfig
from companion.llm.sampling import SamplingParams
from companion.llm.session import RuntimeOptions


@dataclass(frozen=True)
class LLMConfig:
    #: Name of the model manifest in ``models/`` (role llm).
    model: str = "qwen2.5-coder-1.5b-instruct"
    # Sampling and runtime defaults are not repeated here: each is taken from the one dataclass that
    # owns it (``SamplingParams``, ``RuntimeOptions``), where the reason for its value is written.
    #: Reply length cap in tokens.
    max_new_tokens: int = SamplingParams.max_new_tokens
    #: 0 = greedy.
    temperature: float = SamplingParams.temperature
    top_p: float = SamplingParams.top_p
    top_k: int = SamplingParams.top_k
    repetition_penalty: float = SamplingParams.repetition_penalty
    #: No n-gram of this length is said twice, in a reply or across the last replies (0: off).
    no_repeat_ngram: int = SamplingParams.no_repeat_ngram
    #: Tokens drafted by prompt lookup and verified in one pass (0: off; the reply is the same either way).
    draft_tokens: int = SamplingParams.draft_tokens
    #: Fixed seed for reproducible replies (tests, evaluation); None = fresh each time.
    seed: int | None = SamplingParams.seed
    #: onnxruntime threads for one forward pass.
    threads: int = RuntimeOptions.threads
    #: Execution providers in order (CUDA/TensorRT on a Jetson); CPU is always the fallback.
    providers: tuple[str, ...] = RuntimeOptions.providers
    #: Let onnxruntime's idle threads spin between passes (off: the cores go straight to the TTS and ASR).
    spin: bool = RuntimeOptions.spin
    #: Conversation turns (child + robot) kept in the prompt, budget permitting.
    history_turns: int = 6
    #: A smaller language model (manifest or imported name) the service starts with when ``model`` does
    #: not fit the memory it may use (the unit's MemoryMax, the board's budget); "": none, it refuses to
    #: start instead (MEMORY_BUDGET_EXCEEDED). Set by the board profiles.
    small_model: str = ""

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k, repetition_penalty=self.repetition_penalty, seed=self.seed,
            no_repeat_ngram=self.no_repeat_ngram, draft_tokens=self.draft_tokens,
        )

    def runtime(self) -> RuntimeOptions:
        return RuntimeOptions(threads=self.threads, providers=tuple(self.providers), spin=self.spin)


@dataclass(frozen=True)
class PersonaConfig:
    #: Which persona file in configs/personas/ the robot is.
    use: str = "pip"


@dataclass(frozen=True)
class MemoryConfig:
    #: Transcripts older than this are deleted; facts stay until a parent erases them.
    retention_days: float = 30.0
    #: Tokens the whole prompt (persona, memory, history, the child's words) may use. The persona's part
    #: (~540 for Pip with its example exchanges, real tokenizer) is prefilled once and cached.
    prompt_tokens: int = 1280
    #: Facts about the child put into the prompt.
    max_facts: int = 15
    #: Earlier turns found by full-text search put into the prompt.
    recall_turns: int = 2


@dataclass(frozen=True)
class ChildrenConfig:
    #: The child assumed when no ``--child`` is given.
    default: str = "child"


@dataclass(frozen=True)
class HardwareConfig:
    #: "auto" (from the board) or a profile name in hardware/.
    profile: str = "auto"
    #: Board power while talking (from the profile), for energy estimates.
    power_watts: float = 10.0
    #: Most memory the companion service may use on this board, in MB (from the profile); 0: no fixed
    #: budget, only the board's RAM less ``memory_reserve_mb``. The unit's MemoryMax stays within it.
    memory_budget_mb: int = 0
    #: RAM left to the operating system and the robot's other software, in MB (from the profile).
    memory_reserve_mb: int = 1024


@dataclass(frozen=True)
class AudioConfig:
    #: Microphone: a device name fragment or index; None = a hint below, else the system default.
    input_device: str | None = None
    #: Speaker: a device name fragment or index; None = a hint below, else the system default.
    output_device: str | None = None
    #: Name fragments tried in order when no device is named (from the hardware profile).
    input_hints: tuple[str, ...] = ()
    output_hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompanionConfig:
    llm: LLMConfig = field(default_factory=LLMConfig)
    persona: PersonaConfig = field(default_factory=PersonaConfig)
    children: ChildrenConfig = field(default_factory=ChildrenConfig)
    asr: ASRConfig = field(default_factory=ASRConfig)
    vad: EndpointConfig = field(default_factory=EndpointConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    speakers: SpeakerConfig = field(default_factory=SpeakerConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    voice: LoopConfig = field(default_factory=LoopConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    remote: RemoteConfig = field(default_factory=RemoteConfig)

    @classmethod
    def from_dict(cls, data: dict) -> CompanionConfig:
        return _build(cls, data, "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(value, hint, where: str):
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _check(value, opt, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a valid value")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = typing.get_args(hint)[0]
        return tuple(_check(v, inner, f"{where}[]") for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        where = prefix + name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, where + ".")
        else:
            kwargs[name] = _check(value, hint, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix or 'config'}: {err}") from err


def default_config_path() -> Path:
    env = os.environ.get("COMPANION_CONFIG")
    if env:
        return Path(env)
    from companion.paths import configs_dir

    return configs_dir() / "companion.toml"


def load_config(path: Path | None = None) -> CompanionConfig:
    """The config from ``path`` (default: COMPANION_CONFIG or configs/companion.toml)."""
    from companion.hardware import merge, profile_defaults

    explicit = path is not None or "COMPANION_CONFIG" in os.environ
    path = path or default_config_path()
    data: dict = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML: {err}") from err
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    hardware = data.get("hardware", {})
    choice = hardware.get("profile", "auto") if isinstance(hardware, dict) else "auto"
    # The board's profile gives the defaults; whatever the file says wins.
    defaults = profile_defaults(choice)
    merged = merge(defaults, data)
    merged["hardware"] = {**merged["hardware"], "profile": defaults["hardware"]["profile"]}  # "auto" resolved
    config = CompanionConfig.from_dict(merged)
    # Sampling params validate their own ranges; surface them as config errors at load time.
    try:
        config.llm.sampling()
    except ValueError as err:
        raise ConfigError(f"{path}: llm: {err}") from err
    return config
