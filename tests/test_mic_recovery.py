"""A microphone that disappears and comes back: frames resume, nothing raises (fake PortAudio backend)."""

from __future__ import annotations

import asyncio
import threading
import time
import types

import numpy as np

from companion.audio.devices import MicrophoneSource


class FakeBackend:
    """Just enough of the sounddevice module: streams whose callbacks stop while 'unplugged'."""

    def __init__(self) -> None:
        self.unplugged = threading.Event()
        self.terminations = 0
        self.streams = []

    def check_input_settings(self, **_):
        if self.unplugged.is_set():
            raise RuntimeError("Invalid device")

    def query_devices(self, *_a):
        return {"name": "Fake USB Mic", "default_samplerate": 16000, "max_input_channels": 1}

    def _terminate(self):
        self.terminations += 1

    def _initialize(self):
        pass

    def InputStream(self, *, callback, blocksize, **_):  # noqa: N802 - mirrors sounddevice
        if self.unplugged.is_set():
            raise RuntimeError("Error opening InputStream: Invalid device [PaErrorCode -9996]")
        backend = self
        status = types.SimpleNamespace(input_overflow=False)

        class Stream:
            def __init__(self):
                self.running = False

            def start(self):
                self.running = True
                threading.Thread(target=self._pump, daemon=True).start()

            def _pump(self):
                while self.running and not backend.unplugged.is_set():
                    callback(np.full((blocksize, 1), 0.01, np.float32), blocksize, None, status)
                    time.sleep(blocksize / 16000)

            def stop(self):
                self.running = False

            def close(self):
                self.running = False

        stream = Stream()
        self.streams.append(stream)
        return stream


def test_microphone_unplugged_and_replugged_recovers_without_exiting():
    backend = FakeBackend()
    source = MicrophoneSource(0, stall_s=0.3, retry_s=0.1, backend=backend)
    times = []

    async def consume():
        async for frame in source.frames():
            times.append(frame.t)
            if len(times) == 20:
                backend.unplugged.set()  # pulled out
                asyncio.get_running_loop().call_later(1.0, backend.unplugged.clear)  # put back a second later
            if len(times) == 60:
                return

    asyncio.run(asyncio.wait_for(consume(), 20))
    assert source.reconnects >= 1 and backend.terminations >= 1
    gaps = np.diff(times)
    assert gaps.max() > 0.8  # the gap while it was unplugged...
    assert len(times) == 60  # ...and frames came back after it
    assert all(d > 0 for d in gaps)  # timestamps keep moving forward


class FakeOutputBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.consumed = 0

    def OutputStream(self, *, callback, samplerate, **_):  # noqa: N802 - mirrors sounddevice
        if self.unplugged.is_set():
            raise RuntimeError("Error opening OutputStream: Invalid device")
        backend = self
        status = types.SimpleNamespace(output_underflow=False)

        class Stream:
            running = False

            def start(self):
                self.running = True
                threading.Thread(target=self._pump, daemon=True).start()

            def _pump(self):
                n = int(samplerate * 0.02)
                while self.running and not backend.unplugged.is_set():
                    out = np.zeros((n, 1), np.float32)
                    callback(out, n, None, status)
                    backend.consumed += int(np.count_nonzero(out))
                    time.sleep(0.02)

            def stop(self):
                self.running = False

            def close(self):
                self.running = False

        return Stream()


def test_speaker_unplugged_and_replugged_recovers_while_playing():
    from companion.audio.devices import SpeakerPlayer

    backend = FakeOutputBackend()

    async def scenario():
        player = SpeakerPlayer(0, 16000, stall_s=0.3, retry_s=0.1, backend=backend)
        player.enqueue(np.full(16000 * 4, 0.1, np.float32), 16000)  # 4 s of sound
        await asyncio.sleep(0.5)
        before = backend.consumed
        backend.unplugged.set()
        await asyncio.sleep(1.0)
        during = backend.consumed
        backend.unplugged.clear()
        await asyncio.sleep(1.0)
        after = backend.consumed
        await player.drain()
        await player.close()
        return player, before, during, after

    player, before, during, after = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert before > 0 and after > during  # sound flows again after the speaker came back
    assert player.reconnects >= 1
