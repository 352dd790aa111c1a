"""The appliance: systemd unit checks, notify protocol, watchdog heartbeat that stops when a stage hangs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from companion.audio.sinks import SimulatedSpeaker
from companion.audio.sources import Segment, SimulatedMicrophone
from companion.service.notify import Notifier
from companion.service.runner import serve
from tests.conftest import RECORDINGS, unit_exposure

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "companion.service"
JFK = RECORDINGS / "jfk.flac"


@pytest.fixture()
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def _drain(sock, until: float) -> list[str]:
    messages = []
    while time.monotonic() < until:
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
    return messages


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_verifies_and_is_rated_ok_by_systemd_analyze(tmp_path):
    assert unit_exposure(UNIT, tmp_path) <= 3.0
    text = UNIT.read_text()
    for directive in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitBurst=", "StateDirectory=",
                      "CacheDirectory=", "SupplementaryGroups=audio", "ProtectSystem=strict", "ProtectHome=",
                      "NoNewPrivileges=yes", "PrivateTmp=yes", "DeviceAllow=", "IPAddressDeny=any",
                      "RestrictAddressFamilies=", "MemoryMax=", "SystemCallFilter=@system-service"):
        assert directive in text, directive
    assert "PrivateDevices=yes" not in text


def test_notifier_speaks_the_protocol(notify_socket):
    path, sock = notify_socket
    n = Notifier(path)
    assert n.ready("warm") and n.watchdog() and n.stopping()
    got = _drain(sock, time.monotonic() + 0.5)
    assert got == ["READY=1\nSTATUS=warm", "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]
    assert not Notifier("").enabled and not Notifier("").watchdog()


@pytest.mark.real_model
def test_service_ready_pings_and_stops_on_sigterm(real_cache, notify_socket, tmp_path):
    path, sock = notify_socket
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "companion", "run", "--service", "--simulate", str(JFK),
                             "--data-dir", str(tmp_path / "data")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    messages = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(m == "WATCHDOG=1" for m in messages) < 3:
        messages += _drain(sock, time.monotonic() + 0.5)
        assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    messages += _drain(sock, time.monotonic() + 0.5)
    assert proc.returncode == 0, err
    kinds = [m.split("\n")[0] for m in messages if not m.startswith("STATUS=")]
    assert kinds[0] == "READY=1", messages
    assert kinds.count("WATCHDOG=1") >= 3
    assert kinds[-1] == "STOPPING=1"
    assert any(m.startswith("STATUS=loading") for m in messages)
    # The journal gets events, never what the child said.
    assert "fellow" not in (out + err).lower() and "country" not in (out + err).lower()


@pytest.mark.real_model
def test_watchdog_pings_stop_while_a_stage_hangs(voice_models, voice_config, notify_socket, tmp_path):
    path, sock = notify_socket
    release = threading.Event()

    async def scenario():
        stop = asyncio.Event()
        player = SimulatedSpeaker(voice_models.tts.rate)
        frames = lambda loop: SimulatedMicrophone([Segment(JFK)], idle=loop.is_idle, player=player,  # noqa: E731
                                                  endless=True).frames()
        task = asyncio.create_task(serve(voice_models, voice_config, "kid", None, frames, player, Notifier(path),
                                         stop=stop, heartbeat_s=0.3))
        await asyncio.sleep(1.5)
        healthy = _drain(sock, time.monotonic() + 0.1)
        # The LLM worker is stuck in a call that never returns.
        voice_models.generator.executor.submit(release.wait)
        await asyncio.sleep(0.8)  # a beat that was already in flight may still land
        _drain(sock, time.monotonic() + 0.05)
        await asyncio.sleep(1.5)
        hung = _drain(sock, time.monotonic() + 0.1)
        release.set()
        await asyncio.sleep(1.0)
        recovered = _drain(sock, time.monotonic() + 0.1)
        stop.set()
        await task
        return healthy, hung, recovered

    healthy, hung, recovered = asyncio.run(scenario())
    assert healthy[0].startswith("READY=1") and "WATCHDOG=1" in healthy
    assert "WATCHDOG=1" not in hung, hung
    assert "WATCHDOG=1" in recovered


def test_doctor_reports_a_missing_model_and_a_missing_microphone(tmp_path):
    env = {**os.environ, "COMPANION_MODELS_DIR": str(tmp_path / "empty-cache")}
    proc = subprocess.run([sys.executable, "-m", "companion", "doctor", "--data-dir", str(tmp_path / "data")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stdout.splitlines()
    assert any(line.startswith("FAIL") and "model llm" in line and "companion models prepare" in line
               for line in lines), proc.stdout
    assert any(line.startswith("FAIL") and "microphone" in line and
               any(code in line for code in ("AUDIO_BACKEND_MISSING", "AUDIO_NO_MICROPHONE")) for line in lines)
    assert any(line.startswith("ok") and "config" in line for line in lines)


@pytest.mark.real_model
def test_killed_during_a_turn_the_service_restarts_with_memory_intact(real_cache, notify_socket, tmp_path):
    path, sock = notify_socket
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "HF_HUB_OFFLINE": "1"}
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "companion", "run", "--service", "--data-dir", str(data), "--simulate", str(JFK)]
    # First run: let one turn finish, then kill -9 in the middle of the next reply.
    proc = subprocess.Popen(cmd + [str(JFK)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        seen += _drain(sock, time.monotonic() + 0.3)
        done = sum("turns with" in m for m in seen)
        if done >= 1 and sum("talking with" in m for m in seen) >= 2:
            break
    proc.kill()
    proc.wait()
    from companion.memory.store import MemoryStore

    store = MemoryStore(data)
    assert store.integrity_ok()
    assert store.count_turns("child") >= 1  # the acknowledged turn survived
    store.close()
    # Restart: back to READY.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    again, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline and not any(m.startswith("READY=1") for m in again):
        again += _drain(sock, time.monotonic() + 0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert any(m.startswith("READY=1") for m in again)
