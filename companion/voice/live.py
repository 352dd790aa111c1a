"""``companion run``: the robot's main mode, live microphone and speaker."""

from __future__ import annotations

import asyncio
import logging
import signal

from companion.audio.devices import MicrophoneSource, SpeakerPlayer, find_device, sounddevice
from companion.config import CompanionConfig
from companion.voice.events import ClauseSpoken, Transcribed, TurnDropped
from companion.voice.runtime import load_voice_models, new_loop

log = logging.getLogger(__name__)


def run_live(config: CompanionConfig, child: str, memory) -> int:
    sd = sounddevice()
    devices = [dict(d) for d in sd.query_devices()]
    default_in, default_out = sd.default.device
    mic = find_device(devices, config.audio.input_device, "input", default_in, config.audio.input_hints)
    speaker = find_device(devices, config.audio.output_device, "output", default_out, config.audio.output_hints)
    models = load_voice_models(config)
    try:
        asyncio.run(_live(models, config, child, mic, speaker, memory))
    finally:
        models.close()
    return 0


def _output_rate(device: int, voice_rate: int) -> int:
    """The voice's own rate when the card takes it, else the card's default (the player resamples)."""
    sd = sounddevice()
    try:
        sd.check_output_settings(device=device, samplerate=voice_rate, channels=1, dtype="float32")
        return voice_rate
    except Exception:  # noqa: BLE001 - PortAudio reports an unsupported rate as a generic error
        return int(sd.query_devices(device, "output")["default_samplerate"])


def _print_event(event) -> None:
    if isinstance(event, Transcribed):
        print(f"child: {event.text}", flush=True)
    elif isinstance(event, ClauseSpoken):
        print(f"robot: {event.text}", flush=True)
    elif isinstance(event, TurnDropped):
        log.info("dropped (%s): %s", event.reason, event.text)


async def _live(models, config: CompanionConfig, child: str, mic_index: int, speaker_index: int, memory) -> None:
    player = SpeakerPlayer(speaker_index, _output_rate(speaker_index, models.tts.rate))
    loop = new_loop(models, config, child, player, on_event=_print_event, memory=memory)
    sd = sounddevice()
    source = MicrophoneSource(mic_index, resolve=lambda: find_device(
        [dict(d) for d in sd.query_devices()], config.audio.input_device, "input", sd.default.device[0],
        config.audio.input_hints))
    task = asyncio.current_task()
    aio = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        aio.add_signal_handler(sig, task.cancel)
    log.info("listening (microphone %s, speaker %s); Ctrl-C to stop", mic_index, speaker_index)
    try:
        await loop.run(source.frames())
    except asyncio.CancelledError:
        log.info("stopping")
    finally:
        loop.conversation.close()
        await player.close()
        if source.overflows:
            log.warning("[AUDIO_INPUT_OVERFLOW] %d microphone blocks were dropped", source.overflows)
