"""Start-to-ready time and idle CPU of the real service process (``companion run --service``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from companion.audio.files import write_wav


def measure(config_path: Path | None, *, idle_s: float = 10.0, settle_s: float = 3.0,
            timeout_s: float = 120.0) -> dict:
    """Spawn the service on simulated silence, time READY=1, then sample its CPU while it listens."""
    with tempfile.TemporaryDirectory(prefix="companion-bench-") as tmp:
        tmp_path = Path(tmp)
        silence = tmp_path / "silence.wav"
        write_wav(silence, np.zeros(16_000, np.float32), 16_000)
        sock_path = str(tmp_path / "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(0.05)
        cmd = [sys.executable, "-m", "companion"]
        if config_path is not None:
            cmd += ["--config", str(config_path)]
        cmd += ["run", "--service", "--simulate", str(silence), "--data-dir", str(tmp_path / "data"),
                "--child", "bench"]
        env = {**os.environ, "NOTIFY_SOCKET": sock_path, "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            ready_s = None
            while ready_s is None and time.perf_counter() - started < timeout_s:
                try:
                    if sock.recv(4096).decode().startswith("READY=1"):
                        ready_s = time.perf_counter() - started
                except socket.timeout:
                    if proc.poll() is not None:
                        raise RuntimeError(f"the service exited before READY: {proc.stderr.read()[-2000:]}")
            if ready_s is None:
                raise RuntimeError(f"no READY=1 within {timeout_s:.0f} s")
            p = psutil.Process(proc.pid)
            time.sleep(settle_s)
            before, t0 = p.cpu_times(), time.perf_counter()
            time.sleep(idle_s)
            after, t1 = p.cpu_times(), time.perf_counter()
            busy = (after.user + after.system) - (before.user + before.system)
            rss_mb = p.memory_info().rss / 1e6
            return {"ready_s": round(ready_s, 2), "idle_cpu_pct": round(100 * busy / (t1 - t0), 1),
                    "idle_rss_mb": round(rss_mb, 1), "idle_window_s": idle_s}
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            sock.close()
