"""``companion run --service``: the loop as a systemd service (READY, STATUS, WATCHDOG, STOPPING)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable

from companion.audio.frames import AudioFrame
from companion.audio.sinks import Player
from companion.config import CompanionConfig
from companion.memory.worker import MemoryWorker
from companion.service.heartbeat import Heartbeat
from companion.service.notify import Notifier, watchdog_interval_s
from companion.voice.events import LoopEvent, LoopState, StateChanged, TurnCompleted
from companion.voice.loop import VoiceLoop
from companion.voice.runtime import VoiceModels, new_loop

log = logging.getLogger(__name__)


async def serve(models: VoiceModels, config: CompanionConfig, child: str, memory: MemoryWorker | None,
                frames: Callable[[VoiceLoop], AsyncIterator[AudioFrame]], player: Player, notifier: Notifier, *,
                stop: asyncio.Event | None = None, heartbeat_s: float | None = None,
                on_event: Callable[[LoopEvent], None] | None = None) -> int:
    """Run until ``stop`` is set (SIGTERM) or the audio ends; returns the number of turns.

    ``frames(loop)`` makes the audio source (a simulated one needs the loop for turn-taking).
    """
    stop = stop or asyncio.Event()
    last_frame = [time.monotonic()]
    turns = [0]

    def status(event: LoopEvent) -> None:
        if on_event is not None:
            on_event(event)
        if isinstance(event, TurnCompleted):
            turns[0] += 1
            notifier.status(f"listening; {turns[0]} turns with {child} since start")
        elif isinstance(event, StateChanged) and event.state == LoopState.SPEAKING:
            notifier.status(f"talking with {child}")

    loop, brain = new_loop(models, config, child, player, on_event=status, memory=memory)

    async def counted() -> AsyncIterator[AudioFrame]:
        async for frame in frames(loop):
            last_frame[0] = time.monotonic()
            yield frame

    interval = heartbeat_s or watchdog_interval_s() or 10.0
    workers = {"asr": models.asr.executor, "llm": models.generator.executor, "tts": models.tts.executor}
    if memory is not None:
        workers["memory"] = memory.executor
    heartbeat = Heartbeat(notifier, workers, lambda: last_frame[0], interval_s=interval)
    run_task = asyncio.create_task(loop.run(counted()), name="voice-loop")
    beat_task = asyncio.create_task(heartbeat.run(), name="heartbeat")
    stop_task = asyncio.create_task(stop.wait(), name="stop")
    notifier.ready(f"listening for {child} (models warm in {models.load_s:.1f} s)")
    log.info("[SERVICE_READY] listening for %s", child)
    try:
        await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        notifier.stopping("stopping: finishing the current turn's record")
        log.info("[SERVICE_STOPPING] stopping")
        beat_task.cancel()
        stop_task.cancel()
        if not run_task.done():
            run_task.cancel()
        await asyncio.gather(run_task, beat_task, stop_task, return_exceptions=True)
        await brain.close()  # the session summary is the last database write
        await player.close()
    if run_task.done() and not run_task.cancelled() and run_task.exception() is not None:
        raise run_task.exception()
    return turns[0]


def install_stop_signals(stop: asyncio.Event) -> None:
    aio = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        aio.add_signal_handler(sig, stop.set)
