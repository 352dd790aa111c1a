"""The parents' dashboard as its own unit: the unit's sandbox, the self-signed certificate, a real HTTPS round trip."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from companion.parent.app import LOGIN_COOKIE
from companion.parent.tls import CertificateError, certificate_folder, ensure_certificate, fingerprint
from tests.conftest import free_port, unit_exposure, wait_for_port

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "companion-parent.service"
HOME_NETWORK = {"localhost", "link-local", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}


def _directives(text: str) -> dict[str, list[str]]:
    """Each directive's values, in order (a directive may be given more than once)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _companion(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "companion", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_verifies_is_rated_ok_and_reaches_only_the_home_network(tmp_path):
    assert unit_exposure(UNIT, tmp_path) <= 3.0

    d = _directives(UNIT.read_text())
    assert d["ExecStart"] == ["/opt/companion/.venv/bin/companion parent serve --service"]
    assert d["IPAddressDeny"] == ["any"]
    assert set(" ".join(d["IPAddressAllow"]).split()) == HOME_NETWORK
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "SupplementaryGroups" not in d and "DeviceAllow" not in d
    assert d["PrivateDevices"] == ["yes"] and d["User"] == ["companion"] and d["StateDirectory"] == ["companion"]
    assert d["Environment"][0] == "COMPANION_DATA_DIR=%S/companion"
    assert d["Restart"] == ["on-failure"] and "network-online.target" in d["After"][0]


def test_certificate_loads_is_private_and_is_reused(tmp_path):
    folder = certificate_folder(tmp_path)
    cert, key = ensure_certificate(folder)
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["cert.pem", "key.pem"]  # no temporary file left
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {"localhost", socket.gethostname()} <= set(san.get_values_for_type(x509.DNSName))
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    first, key_bytes = fingerprint(cert), key.read_bytes()
    assert ensure_certificate(folder) == (cert, key)
    assert fingerprint(cert) == first and key.read_bytes() == key_bytes
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert first == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_a_key_left_without_its_certificate_is_replaced(tmp_path):
    """The certificate is written last: a key alone (killed between the writes) was never shown to anyone."""
    folder = certificate_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "key.pem").write_text("half a key")
    cert, key = ensure_certificate(folder)
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)


def test_an_unusable_certificate_is_a_coded_error_and_is_kept(tmp_path):
    folder = certificate_folder(tmp_path)
    cert, key = ensure_certificate(folder)
    other_key = ensure_certificate(certificate_folder(tmp_path / "other"))[1]
    key.write_bytes(other_key.read_bytes())
    with pytest.raises(CertificateError) as mismatch:
        ensure_certificate(folder)
    assert mismatch.value.code == "TLS_CERT_INVALID" and "not the key" in mismatch.value.message

    cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateError) as corrupt:
        ensure_certificate(folder)
    assert corrupt.value.code == "TLS_CERT_INVALID"
    assert "not base64" in cert.read_text(), "an unusable certificate must never be silently replaced"
    proc = _companion("parent", "url", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error [TLS_CERT_INVALID]"), proc.stderr
    assert "Traceback" not in proc.stderr

    proc = _companion("parent", "url", "--data-dir", str(tmp_path / "none"))
    assert proc.returncode == 2 and "error [TLS_CERT_MISSING]" in proc.stderr, proc.stderr
    assert "companion parent certificate" in proc.stderr


def test_https_round_trip_with_secure_cookie_and_the_fingerprint_parents_check(tmp_path):
    data, port = tmp_path / "data", free_port()
    server = subprocess.Popen([sys.executable, "-m", "companion", "parent", "serve", "--tls", "--port", str(port),
                               "--host", "127.0.0.1", "--data-dir", str(data)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(server, port)
        cert = certificate_folder(data) / "cert.pem"
        # Trusts exactly the robot's certificate, and checks that it names 127.0.0.1.
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        conn.request("GET", "/login")
        response = conn.getresponse()
        body = response.read().decode()
        served = conn.sock.getpeercert(binary_form=True)
        conn.close()
        assert response.status == 200 and 'name="password"' in body
        cookies = [c for c in response.headers.get_all("set-cookie") if c.startswith(f"{LOGIN_COOKIE}=")]
        assert len(cookies) == 1 and "secure" in [a.strip().lower() for a in cookies[0].split(";")], cookies
        assert ":".join(f"{b:02X}" for b in hashlib.sha256(served).digest()) == fingerprint(cert)

        url = _companion("parent", "url", "--data-dir", str(data), "--port", str(port))
        assert url.returncode == 0, url.stderr
        assert f"fingerprint: {fingerprint(cert)}" in url.stdout
        assert all(line.startswith("https://") and line.endswith(f":{port}/")
                   for line in url.stdout.splitlines()[:-2]), url.stdout
    finally:
        server.kill()
        server.communicate(timeout=30)
