"""Choosing sound devices by hint, with coded errors that list what exists."""

import pytest

from companion.audio.devices import AudioDeviceError, find_device

DEVICES = [
    {"name": "HDA Intel PCH: HDMI 0", "max_input_channels": 0, "max_output_channels": 8},
    {"name": "USB PnP Sound Device: Audio", "max_input_channels": 1, "max_output_channels": 2},
    {"name": "seeed-2mic-voicecard", "max_input_channels": 2, "max_output_channels": 2},
]


def test_hint_by_name_fragment_and_index():
    assert find_device(DEVICES, "usb pnp", "input", None) == 1
    assert find_device(DEVICES, "seeed", "output", None) == 2
    assert find_device(DEVICES, 2, "input", None) == 2
    assert find_device(DEVICES, "0", "output", None) == 0


def test_default_and_fallback():
    assert find_device(DEVICES, None, "input", 2) == 2
    assert find_device(DEVICES, None, "input", 0) == 1  # the default has no input channels


def test_missing_devices_are_coded_and_list_what_exists():
    with pytest.raises(AudioDeviceError) as info:
        find_device(DEVICES, "respeaker", "input", None)
    assert info.value.code == "AUDIO_DEVICE_NOT_FOUND" and "seeed-2mic-voicecard" in info.value.message
    with pytest.raises(AudioDeviceError) as info:
        find_device(DEVICES, 0, "input", None)  # HDMI has no microphone
    assert info.value.code == "AUDIO_DEVICE_NOT_FOUND"
    with pytest.raises(AudioDeviceError) as info:
        find_device([], None, "input", None)
    assert info.value.code == "AUDIO_NO_MICROPHONE"
