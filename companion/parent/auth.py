"""The parent's password (argon2id), sessions, CSRF tokens and login rate limiting.

Sessions live in the server's memory: a random token in an ``HttpOnly; SameSite=Strict`` cookie.
Logging out, or restarting the robot, ends them. Every form carries the session's CSRF token
(the login form a cookie-bound one), compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from companion.errors import ConfigError
from companion.memory.store import MemoryStore

PASSWORD_KEY = "parent_password_argon2"
MIN_PASSWORD = 8

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def set_password(store: MemoryStore, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the parent password needs at least {MIN_PASSWORD} characters", code="PARENT_PASSWORD_WEAK")
    store.put_setting(PASSWORD_KEY, _hasher.hash(password))


def has_password(store: MemoryStore) -> bool:
    return bool(store.setting(PASSWORD_KEY))


def check_password(store: MemoryStore, password: str) -> bool:
    stored = store.setting(PASSWORD_KEY)
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


class LoginLimiter:
    """At most ``max_failures`` wrong passwords per client per ``window_s``; further tries are refused
    unchecked until the window has passed."""

    def __init__(self, max_failures: int = 5, window_s: float = 60.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque(maxlen=self.max_failures))
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def allowed(self, client: str, now: float | None = None) -> bool:
        return len(self._recent(client, now or time.monotonic())) < self.max_failures

    def failed(self, client: str, now: float | None = None) -> None:
        now = now or time.monotonic()
        self._recent(client, now).append(now)
        if len(self._failures) > 10_000:  # bounded: forget the oldest clients
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    def __init__(self, idle_s: float = 3600.0, max_age_s: float = 12 * 3600.0, max_sessions: int = 64) -> None:
        self.idle_s, self.max_age_s, self.max_sessions = idle_s, max_age_s, max_sessions
        self._by_token: dict[str, Session] = {}

    def create(self) -> tuple[str, Session]:
        if len(self._by_token) >= self.max_sessions:
            self._by_token.pop(min(self._by_token, key=lambda t: self._by_token[t].seen))
        token = secrets.token_urlsafe(32)
        self._by_token[token] = session = Session()
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        now = time.monotonic()
        if session is None or now - session.seen > self.idle_s or now - session.created > self.max_age_s:
            self._by_token.pop(token, None)
            return None
        session.seen = now
        return session

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
