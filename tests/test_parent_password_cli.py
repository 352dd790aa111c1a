"""`companion parent set-password` from a pipe: a coded error naming --stdin, never a traceback."""

from __future__ import annotations

import argparse
import getpass
import io
import os
import subprocess
import sys

import pytest

from companion.cli import parent_cmd
from companion.errors import CompanionError
from companion.memory.store import MemoryStore
from companion.parent import auth

PASSWORD = "correct horse battery"


def _set_password(tmp_path, *flags):
    # A new session: no controlling terminal, as under ssh without -t, cron or a provisioning script.
    return subprocess.run([sys.executable, "-m", "companion", "parent", "set-password", "--data-dir",
                           str(tmp_path / "data"), *flags], input=PASSWORD + "\n", capture_output=True, text=True,
                          env=os.environ.copy(), timeout=60, start_new_session=True)


def _stored(tmp_path) -> bool:
    store = MemoryStore(tmp_path / "data")
    try:
        return auth.check_password(store, PASSWORD)
    finally:
        store.close()


def test_a_piped_password_without_stdin_flag_is_a_coded_error_that_names_the_flag(tmp_path):
    proc = _set_password(tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "EOFError" not in proc.stderr
    assert "error [PARENT_PASSWORD_NO_TERMINAL]" in proc.stderr and "--stdin" in proc.stderr
    assert not _stored(tmp_path)


def test_the_stdin_flag_reads_the_piped_password(tmp_path):
    proc = _set_password(tmp_path, "--stdin")
    assert proc.returncode == 0, proc.stderr
    assert _stored(tmp_path)


def test_input_that_ends_at_a_terminal_prompt_is_coded_too(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def ended(_prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(sys, "stdin", Terminal(""))
    monkeypatch.setattr(getpass, "getpass", ended)
    with pytest.raises(CompanionError) as info:
        parent_cmd.cmd_set_password(argparse.Namespace(stdin=False, data_dir=tmp_path / "data"))
    assert info.value.code == "PARENT_PASSWORD_NO_TERMINAL" and "--stdin" in info.value.message
