"""``[remote]``: stages the robot may hand to a stronger machine in the house over Wyoming."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse


def _check_uri(name: str, uri: str) -> None:
    if not uri:
        return
    parsed = urlparse(uri)
    if parsed.scheme == "tcp" and parsed.hostname and parsed.port:
        return
    if parsed.scheme == "unix" and parsed.path:
        return
    raise ValueError(f"remote.{name} must be tcp://HOST:PORT or unix://PATH (or \"\": the robot's own), not {uri!r}")


@dataclass(frozen=True)
class RemoteConfig:
    """Each stage is the robot's own unless a Wyoming server is named here ("tcp://192.168.1.20:10700",
    e.g. ``companion wyoming`` or wyoming-faster-whisper / wyoming-piper on the family's PC). A server
    that is down, refuses, errs or is slower than its timeout is skipped for ``retry_after_s`` and the
    robot's own model answers at once: a child never waits on a dead server."""

    asr: str = ""
    tts: str = ""
    #: The reply's words (a bigger model on the PC); the robot still plans each turn and checks every
    #: piece of the server's text with its own output guard before speaking it.
    handle: str = ""
    #: Longest wait to connect to a server (a powered-off PC: the connection is never refused, it hangs).
    connect_timeout_s: float = 0.5
    #: Longest wait for a transcript once the audio is sent, and for one piece of speech.
    asr_timeout_s: float = 2.0
    tts_timeout_s: float = 2.0
    #: Longest wait for the server's first words, and between two pieces of its reply.
    handle_timeout_s: float = 3.0
    #: After a failure, the robot's own stage is used this long before the server is tried again.
    retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        for stage in ("asr", "tts", "handle"):
            _check_uri(stage, getattr(self, stage))
        for name in ("connect_timeout_s", "asr_timeout_s", "tts_timeout_s", "handle_timeout_s", "retry_after_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"remote.{name} must be > 0")
