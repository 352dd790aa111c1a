"""A parent in a real headless Chromium (Debian's package, driven by Playwright), phone-sized window.

Log in, see a transcript a `companion simulate` run produced, erase the child's memory and see it
gone, set quiet hours and see the next simulated turn answered with the resting line. A screenshot
of the overview page is saved to .ci/artifacts/parent-overview.png.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from companion.memory.store import MemoryStore
from companion.parent.settings import RESTING_LINE
from tests.conftest import free_port, wait_for_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / ".ci" / "artifacts"
PASSWORD = "a long parent password"

pytestmark = [
    pytest.mark.real_model,
    # CI installs Debian's chromium (.ci/run); a developer machine without it skips, CI never does.
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="chromium not installed"),
]


def _companion(*args: str, stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "companion", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_parent_uses_the_dashboard_from_a_phone(real_cache, tmp_path):
    from playwright.sync_api import sync_playwright

    data = tmp_path / "data"
    _companion("simulate", "--say", "My favourite colour is green.", "--child", "mia", "--data-dir", str(data),
               "--out", str(tmp_path / "first"))
    _companion("parent", "set-password", "--stdin", "--data-dir", str(data), stdin=PASSWORD + "\n")
    port = free_port()
    # As companion-parent.service runs it: HTTPS with the robot's self-signed certificate.
    server = subprocess.Popen([sys.executable, "-m", "companion", "parent", "serve", "--service", "--host",
                               "127.0.0.1", "--port", str(port), "--data-dir", str(data)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for_port(server, port)
        # The certificate the server presents is the one whose fingerprint `companion parent url` tells parents.
        import hashlib
        import ssl

        der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port)))
        served = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        told = _companion("parent", "url", "--data-dir", str(data), "--port", str(port)).stdout
        assert served in told, (served, told)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            # A parent accepts the self-signed certificate once, after comparing its fingerprint.
            context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                          ignore_https_errors=True)
            page = context.new_page()
            page.goto(url + "/")
            assert page.url.endswith("/login")
            page.fill("#password", "not the password")
            page.click("button[type=submit]")
            assert "Wrong password" in page.inner_text("#error")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            assert page.url == url + "/" and "mia" in page.inner_text("#child-mia")
            cookies = context.cookies()
            assert cookies and all(c["secure"] and c["httpOnly"] for c in cookies), cookies
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "parent-overview.png"), full_page=True)

            page.click("#child-mia >> text=Transcripts")
            assert "green" in page.inner_text("main").lower()
            page.goto(url + "/children/mia/memory")
            assert "green" in page.input_value("form.fact input[name=value]")
            page.fill("#confirm", "mia")
            page.click("#erase")
            assert "erased" in page.inner_text("#message")
            page.goto(url + "/children/mia/transcripts")
            assert "No child" in page.inner_text("#message")

            now = dt.datetime.now()
            page.goto(url + "/settings")
            page.fill("#quiet_start", (now - dt.timedelta(minutes=10)).strftime("%H:%M"))
            page.fill("#quiet_end", (now + dt.timedelta(minutes=20)).strftime("%H:%M"))
            page.click("#save")
            assert "Saved" in page.inner_text("#saved")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)

    store = MemoryStore(data)
    assert store.children() == [] and store.count_turns() == 0  # erased means erased
    store.close()
    _companion("simulate", "--say", "Can you tell me a story?", "--child", "mia", "--data-dir", str(data),
               "--out", str(tmp_path / "second"))
    turns = [json.loads(line) for line in (tmp_path / "second" / "turns.jsonl").read_text().splitlines()]
    assert [t["reply"] for t in turns] == [RESTING_LINE]
    assert (ARTIFACTS / "parent-overview.png").stat().st_size > 10_000


def test_the_robot_serves_the_dashboard_beside_the_loop(real_cache, tmp_path):
    """`companion run --parent-port`: the dashboard answers while the voice loop runs in the same process."""
    import signal
    import urllib.request

    from companion.audio.files import write_wav

    import numpy as np

    silence = tmp_path / "silence.wav"
    write_wav(silence, np.zeros(16000, np.float32), 16000)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "companion", "run", "--simulate", str(silence), "--data-dir",
                             str(tmp_path / "data"), "--parent-port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline, body = time.monotonic() + 120, None
        while body is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2).read().decode()
            except OSError:
                time.sleep(0.3)
        assert 'name="password"' in body
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/overview", timeout=2)
        assert denied.value.code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
