"""The int4 block size has one default, INT4_BLOCK_SIZE: no code path and no manifest carries a second one."""

from __future__ import annotations

import ast
from pathlib import Path

from companion.llm.export import INT4_BLOCK_SIZE
from companion.models import manifest as manifest_module
from companion.models.manifest import load_manifests, parse_manifest
from companion.paths import manifests_dir

PACKAGE = Path(manifest_module.__file__).resolve().parents[1]
ALLOWED_NAMES = {"INT4_BLOCK_SIZE", "block_size"}  # the constant, or a value passed along


def _is_block(name: str | None) -> bool:
    return bool(name) and name.replace("-", "_").lstrip("_") == "block_size"


def _literal_defaults(tree: ast.AST):
    """Every place a block size gets a value that is not INT4_BLOCK_SIZE or a block size passed on."""
    def bad(value: ast.AST | None) -> bool:
        if value is None:
            return False
        names = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(value) if isinstance(n, ast.Attribute)}
        return not (names & ALLOWED_NAMES)

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                if _is_block(arg.arg) and bad(default):
                    yield node.lineno, f"parameter {arg.arg} of {node.name}()"
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if _is_block(kw.arg) and bad(kw.value):
                    yield node.lineno, f"keyword {kw.arg}="
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if any(_is_block(f) for f in flags):
                for kw in node.keywords:
                    if kw.arg == "default" and bad(kw.value):
                        yield node.lineno, f"option {flags[0]} default"
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and _is_block(node.target.id):
            if bad(node.value):
                yield node.lineno, f"field {node.target.id}"


def test_no_code_path_has_a_block_size_of_its_own():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, what in _literal_defaults(ast.parse(path.read_text(encoding="utf-8"))):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert found == []


def test_the_scan_finds_a_second_default():
    code = ("def quantize(m, block_size=32): ...\n"
            "def run(*, block_size: int = INT4_BLOCK_SIZE): quantize(1, block_size=block_size)\n"
            "parser.add_argument('--block-size', type=int, default=32)\n"
            "run(block_size=128)\n")
    assert [line for line, _ in _literal_defaults(ast.parse(code))] == [1, 3, 4]


def test_no_manifest_repeats_the_default():
    """A manifest names a block size only to differ from INT4_BLOCK_SIZE (its value is a second copy of the
    default otherwise: changing INT4_BLOCK_SIZE would silently not reach that model)."""
    for path in sorted(manifests_dir().glob("*.toml")):
        import tomllib

        convert = tomllib.loads(path.read_text(encoding="utf-8")).get("convert", {})
        assert convert.get("block_size", None) != INT4_BLOCK_SIZE, path.name


def test_the_default_block_size_is_part_of_the_manifest_digest(monkeypatch):
    """A prepared model follows INT4_BLOCK_SIZE: changing it makes the prepared model stale; naming the
    default in a manifest or leaving it out is the same manifest (nothing to export again)."""
    text = (manifests_dir() / "qwen2.5-coder-1.5b-instruct.toml").read_text(encoding="utf-8")
    named = text.replace('quantize = "int4"\n', f'quantize = "int4"\nblock_size = {INT4_BLOCK_SIZE}\n', 1)
    assert parse_manifest(named).digest == parse_manifest(text).digest
    before = parse_manifest(text).digest
    monkeypatch.setattr(manifest_module, "INT4_BLOCK_SIZE", INT4_BLOCK_SIZE // 2)
    assert parse_manifest(text).digest != before
    assert parse_manifest(named).digest == before  # it names its block size: the default does not touch it


def test_every_language_model_is_exported_with_the_default():
    llms = [m for m in load_manifests(manifests_dir()).values() if m.convert.recipe == "llm-onnx"]
    assert llms and {m.convert.block_size for m in llms} == {INT4_BLOCK_SIZE}
