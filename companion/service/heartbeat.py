"""The watchdog heartbeat: a ping goes to systemd only when every stage answered.

Each beat puts a no-op job on the ASR, LLM and TTS workers (one worker each, so a
hung model call holds the no-op back) and checks that audio frames are still
flowing through the loop. Only when all come back in time is WATCHDOG=1 sent;
a free-running timer never pings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor

from companion.service.notify import Notifier

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, notifier: Notifier, executors: dict[str, Executor], last_frame: Callable[[], float],
                 *, interval_s: float, timeout_s: float | None = None, max_audio_gap_s: float = 5.0) -> None:
        self.notifier = notifier
        self.executors = executors
        self.last_frame = last_frame
        self.interval_s = interval_s
        self.timeout_s = timeout_s or interval_s
        self.max_audio_gap_s = max_audio_gap_s
        self.pings = 0
        self.missed: list[str] = []
        # At most one probe per stage in flight: a hung stage does not collect a queue of probes.
        self._probes: dict[str, asyncio.Future] = {}

    async def beat(self) -> list[str]:
        """The stages that did not answer (empty: all well)."""
        loop = asyncio.get_running_loop()
        for name, ex in self.executors.items():
            if name not in self._probes or self._probes[name].done():
                self._probes[name] = loop.run_in_executor(ex, time.monotonic)
        await asyncio.wait(self._probes.values(), timeout=self.timeout_s)
        stuck = [name for name, fut in self._probes.items() if not fut.done()]
        if time.monotonic() - self.last_frame() > self.max_audio_gap_s:
            stuck.append("audio")
        return stuck

    async def run(self) -> None:
        while True:
            stuck = await self.beat()
            if stuck:
                self.missed = stuck
                log.error("[SERVICE_STAGE_STUCK] no heartbeat from %s; not pinging the watchdog", ", ".join(stuck))
            else:
                self.missed = []
                self.notifier.watchdog()
                self.pings += 1
            await asyncio.sleep(self.interval_s)
