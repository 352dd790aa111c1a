"""The real sound card as the loop's microphone and speaker (used by ``companion run``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from companion.audio.devices import MicrophoneSource, SpeakerPlayer, find_device, sounddevice
from companion.audio.frames import AudioFrame
from companion.config import CompanionConfig


def _find(sd, config: CompanionConfig, kind: str) -> int:
    devices = [dict(d) for d in sd.query_devices()]
    if kind == "input":
        return find_device(devices, config.audio.input_device, "input", sd.default.device[0], config.audio.input_hints)
    return find_device(devices, config.audio.output_device, "output", sd.default.device[1], config.audio.output_hints)


def pick_devices(config: CompanionConfig) -> tuple[int, int]:
    """(microphone, speaker) indices, or a coded error naming what exists."""
    sd = sounddevice()
    return _find(sd, config, "input"), _find(sd, config, "output")


def _output_rate(sd, device: int, voice_rate: int) -> int:
    """The voice's own rate when the card takes it, else the card's default (the player resamples)."""
    try:
        sd.check_output_settings(device=device, samplerate=voice_rate, channels=1, dtype="float32")
        return voice_rate
    except Exception:  # noqa: BLE001 - PortAudio reports an unsupported rate as a generic error
        return int(sd.query_devices(device, "output")["default_samplerate"])


def open_devices(config: CompanionConfig, mic: int, speaker: int,
                 voice_rate: int) -> tuple[Callable[[object], AsyncIterator[AudioFrame]], SpeakerPlayer]:
    """A frames factory for the loop and the speaker player; the microphone is found again by name after a
    reconnect (its index can change when it is plugged back in)."""
    sd = sounddevice()
    player = SpeakerPlayer(speaker, _output_rate(sd, speaker, voice_rate),
                           resolve=lambda: _find(sd, config, "output"))
    source = MicrophoneSource(mic, resolve=lambda: _find(sd, config, "input"))
    return (lambda _loop: source.frames()), player
