"""``companion parent serve|set-password|certificate|url``: the parents' dashboard on the home network."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from companion.config import load_config
from companion.errors import CompanionError
from companion.memory.store import MemoryStore
from companion.memory.worker import MemoryWorker
from companion.paths import default_data_dir

DEFAULT_PORT = 8080
#: The private IPv4 ranges (RFC 1918) a home network uses; companion-parent.service allows only these,
#: loopback and link-local.
HOME_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def add_parser(sub) -> None:
    p = sub.add_parser("parent", help="the parents' dashboard (quiet hours, limits, alerts, transcripts, erase)")
    psub = p.add_subparsers(dest="parent_command", required=True)
    s = psub.add_parser("serve", help="serve the dashboard on the home network")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--data-dir", type=Path, default=None)
    s.add_argument("--service", action="store_true",
                   help="run as companion-parent.service: HTTPS unless --no-tls")
    s.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                   help="serve HTTPS with the robot's self-signed certificate, made on first use "
                        "(default: on with --service, off otherwise)")
    s.set_defaults(func=cmd_serve)
    pw = psub.add_parser("set-password", help="set the parents' password (asked twice, or one line on stdin)")
    pw.add_argument("--data-dir", type=Path, default=None)
    pw.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    pw.set_defaults(func=cmd_set_password)
    c = psub.add_parser("certificate", help="make the dashboard's TLS certificate if there is none (an existing "
                                            "one is kept) and print its SHA-256 fingerprint")
    c.add_argument("--data-dir", type=Path, default=None)
    c.set_defaults(func=cmd_certificate)
    u = psub.add_parser("url", help="the https addresses a parent types, and the certificate's fingerprint")
    u.add_argument("--data-dir", type=Path, default=None)
    u.add_argument("--port", type=int, default=DEFAULT_PORT)
    u.set_defaults(func=cmd_url)


def cmd_set_password(args: argparse.Namespace) -> int:
    from companion.parent import auth

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = _ask_twice()
    store = MemoryStore(args.data_dir or default_data_dir())
    try:
        auth.set_password(store, password)
    finally:
        store.close()
    print("parent password set")
    return 0


def _ask_twice() -> str:
    """The password typed twice at a terminal. Anything else on stdin (a pipe, a file, nothing) is refused
    with a code that names --stdin: getpass would read the pipe's one line, then end in an EOFError."""
    if not sys.stdin.isatty():
        raise CompanionError("stdin is not a terminal, so the password cannot be asked for twice; to read it "
                             "from stdin, pass --stdin: echo PASSWORD | companion parent set-password --stdin",
                             code="PARENT_PASSWORD_NO_TERMINAL")
    try:
        password = getpass.getpass("new parent password: ")
        again = getpass.getpass("again: ")
    except EOFError as err:
        raise CompanionError("the password input ended before it was typed twice; to read it from stdin, pass "
                             "--stdin", code="PARENT_PASSWORD_NO_TERMINAL") from err
    if again != password:
        raise CompanionError("the two passwords differ", code="PARENT_PASSWORD_MISMATCH")
    return password


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from companion.parent.tls import certificate_folder, ensure_certificate

    config = load_config(args.config)
    data_dir = args.data_dir or default_data_dir()
    use_tls = args.service if args.tls is None else args.tls
    tls = ensure_certificate(certificate_folder(data_dir)) if use_tls else None
    store = MemoryStore(data_dir)
    try:
        asyncio.run(serve(store, config, args.host, args.port, tls=tls))
    finally:
        store.close()
    return 0


async def serve(store: MemoryStore | MemoryWorker, config, host: str, port: int, *,
                tls: tuple[Path, Path] | None = None) -> None:
    """Serve the dashboard on the running event loop until cancelled (also used beside ``companion run``).
    ``tls``: ``(cert_path, key_path)`` to serve HTTPS, with the cookies marked ``Secure``."""
    import uvicorn

    from companion.parent.app import create_app
    from companion.parent.tls import fingerprint

    cert, key = tls or (None, None)
    server = uvicorn.Server(uvicorn.Config(create_app(store, config, secure_cookies=tls is not None), host=host,
                                           port=port, log_level="warning", access_log=False, lifespan="off",
                                           ssl_certfile=cert, ssl_keyfile=key))
    where = f"https://{host}:{port}/ (certificate SHA-256 {fingerprint(cert)})" if cert else f"http://{host}:{port}/"
    print(f"parent dashboard on {where}", flush=True)
    await server.serve()


def cmd_certificate(args: argparse.Namespace) -> int:
    from companion.parent.tls import certificate_folder, ensure_certificate, fingerprint

    cert, _key = ensure_certificate(certificate_folder(args.data_dir or default_data_dir()))
    print(f"certificate {cert}\nSHA-256 {fingerprint(cert)}")
    return 0


def cmd_url(args: argparse.Namespace) -> int:
    """Only reads: the certificate is made by the service (or ``companion parent certificate``) as the
    service's user, never by whoever asks for the address."""
    from companion.parent.tls import CERT_NAME, certificate_folder, fingerprint

    fp = fingerprint(certificate_folder(args.data_dir or default_data_dir()) / CERT_NAME)
    for host in robot_hosts():
        print(f"https://{host}:{args.port}/")
    print(f"certificate SHA-256 fingerprint: {fp}")
    print("check that the browser shows the same fingerprint the first time you open the dashboard")
    return 0


def robot_hosts() -> list[str]:
    """The names a phone on the home network reaches the robot by: its mDNS name (``<hostname>.local``,
    or the hostname as it is when it has a domain) and its IPv4 addresses in the private ranges."""
    import ipaddress
    import socket

    import psutil

    hostname = socket.gethostname()
    hosts = [hostname if "." in hostname else f"{hostname}.local"]
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and any(ipaddress.ip_address(a.address) in ipaddress.ip_network(net)
                                                  for net in HOME_NETWORKS):
                hosts.append(a.address)
    return list(dict.fromkeys(hosts))
