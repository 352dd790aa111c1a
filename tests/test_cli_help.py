"""Every command's --help prints (argparse formats help text with %: a bare '95 % interval' broke
`companion bench --help` with a TypeError)."""

from __future__ import annotations

import argparse

import pytest

from companion.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_command_prints_its_help():
    parser = build_parser()
    seen = []
    for path, sub in _parsers(parser):
        text = sub.format_help()
        assert "usage:" in text, path
        seen.append(" ".join(path))
    assert {"bench", "bench compare", "chat", "eval quality", "models prepare"} <= set(seen)


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"], ["bench", "compare", "--help"]])
def test_help_exits_cleanly(argv, capsys):
    from companion.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0 and "usage:" in capsys.readouterr().out
