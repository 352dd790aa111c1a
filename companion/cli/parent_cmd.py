"""``companion parent serve|set-password``: the parents' dashboard on the home network."""

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


def add_parser(sub) -> None:
    p = sub.add_parser("parent", help="the parents' dashboard (quiet hours, limits, alerts, transcripts, erase)")
    psub = p.add_subparsers(dest="parent_command", required=True)
    s = psub.add_parser("serve", help="serve the dashboard on the home network")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--data-dir", type=Path, default=None)
    s.set_defaults(func=cmd_serve)
    pw = psub.add_parser("set-password", help="set the parents' password (asked twice, or one line on stdin)")
    pw.add_argument("--data-dir", type=Path, default=None)
    pw.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    pw.set_defaults(func=cmd_set_password)


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

    config = load_config(args.config)
    store = MemoryStore(args.data_dir or default_data_dir())
    try:
        asyncio.run(serve(store, config, args.host, args.port))
    finally:
        store.close()
    return 0


async def serve(store: MemoryStore | MemoryWorker, config, host: str, port: int) -> None:
    """Serve the dashboard on the running event loop until cancelled (also used beside ``companion run``)."""
    import uvicorn

    from companion.parent.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(store, config), host=host, port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    print(f"parent dashboard on http://{host}:{port}/", flush=True)
    await server.serve()
