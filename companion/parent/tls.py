"""The dashboard's self-signed TLS certificate, made on the robot.

No certificate authority knows a robot on a home network, so the robot makes its own certificate once and
keeps it: a parent checks its SHA-256 fingerprint against what the browser shows the first time, and the
browser remembers it. A pair that exists is therefore reused as it is; one that cannot be used is a coded
error, never silently replaced by a new one whose fingerprint the parent has not checked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import tempfile
from pathlib import Path

from companion.errors import CompanionError

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
#: Long enough that a robot never meets its expiry in a child's use of it (browsers warn on a
#: self-signed certificate anyway, whatever its lifetime).
VALID_DAYS = 3650

#: Stable codes of a certificate that cannot be used.
TLS_CERT_INVALID = "TLS_CERT_INVALID"
TLS_CERT_EXPIRED = "TLS_CERT_EXPIRED"
TLS_CERT_MISSING = "TLS_CERT_MISSING"


class CertificateError(CompanionError):
    code = TLS_CERT_INVALID


def certificate_folder(data_dir: Path) -> Path:
    """Where the pair lives: beside the memory database, in the service's state directory."""
    return data_dir / "tls"


def ensure_certificate(folder: Path) -> tuple[Path, Path]:
    """``(cert_path, key_path)`` in ``folder``: the pair already there when it is usable, else a new one.

    The certificate is written last and is the pair's commit point: a key without a certificate (a process
    killed between the two writes) was never shown to anyone, so a new pair replaces it; a certificate
    whose key is missing, unreadable or not its own is a ``TLS_CERT_INVALID`` error."""
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    if cert_path.exists():
        _check_pair(cert_path, key_path)
        return cert_path, key_path
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_pem, cert_pem = _new_pair(socket.gethostname())
    _write_atomically(key_path, key_pem, 0o600)
    _write_atomically(cert_path, cert_pem, 0o644)
    return cert_path, key_path


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the certificate's DER form, as browsers show it: ``AB:CD:...`` (upper-case hex)."""
    from cryptography.hazmat.primitives import hashes

    digest = _load_certificate(cert_path).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def _load_certificate(cert_path: Path):
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError as err:
        raise CertificateError(f"no dashboard certificate at {cert_path}; make it with `companion parent "
                               f"certificate` (the service also makes it when it first starts)",
                               code=TLS_CERT_MISSING) from err
    except (OSError, ValueError) as err:
        raise CertificateError(f"the dashboard certificate {cert_path} cannot be read ({err}); move the folder "
                               f"{cert_path.parent} away and run `companion parent certificate` to make a new one "
                               f"(parents then check the new fingerprint)") from err


def _check_pair(cert_path: Path, key_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    cert = _load_certificate(cert_path)
    remake = (f"move the folder {cert_path.parent} away and run `companion parent certificate` to make a new "
              f"one (parents then check the new fingerprint)")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise CertificateError(f"the dashboard's private key {key_path} cannot be read ({err}); {remake}") from err
    if key.public_key() != cert.public_key():
        raise CertificateError(f"the dashboard's private key {key_path} is not the key of {cert_path}; {remake}")
    if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc):
        raise CertificateError(f"the dashboard certificate {cert_path} expired on "
                               f"{cert.not_valid_after_utc:%Y-%m-%d}; {remake}", code=TLS_CERT_EXPIRED)


def _new_pair(hostname: str) -> tuple[bytes, bytes]:
    """An EC P-256 key and a self-signed server certificate for the robot's names, as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = [hostname, "localhost"] + ([f"{hostname}.local"] if "." not in hostname else [])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            # A day back: a robot without a clock battery may start a little behind.
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dict.fromkeys(names)]
                                                       + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            # A server certificate, not a CA: Firefox refuses a CA certificate used as a server's.
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """``data`` at ``path`` whole or not at all: a temporary file (created 0600) in the same folder, synced,
    then renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
