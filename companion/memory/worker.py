"""The memory database off the event loop: one thread owns one connection, jobs run in order.

Every read and write of the voice loop (and of the parents' dashboard when it runs in the
same process) goes through ``MemoryWorker.call``: the loop awaits the result while audio
keeps flowing, writes are ordered (a turn's alert, its transcript, its facts, then the
next turn's reads) and a write's future resolves only after SQLite's commit, which is
fsync'd (``synchronous=FULL``): that is the acknowledgement. A ``VACUUM`` after an erase
or a purge runs here too, and never stalls playback or barge-in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import TypeVar

from companion.memory.store import MemoryStore

T = TypeVar("T")


class MemoryWorker:
    """A one-thread executor bound to a ``MemoryStore``."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory")

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The worker's executor (the service's heartbeat checks that it still answers)."""
        return self._executor

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> concurrent.futures.Future[T]:
        """Queue ``fn(store, *args, **kwargs)`` now (its place in the order is taken at once)."""
        return self._executor.submit(functools.partial(fn, self.store, *args, **kwargs))

    async def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(store, *args, **kwargs)`` on the worker; the loop waits without blocking."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def close(self) -> None:
        """Finish queued jobs (acknowledged writes are never dropped), then stop the thread."""
        self._executor.shutdown(wait=True)
