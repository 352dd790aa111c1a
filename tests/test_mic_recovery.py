"""A microphone or speaker that disappears and comes back: sound resumes, nothing raises (fake PortAudio backend)."""

from __future__ import annotations

import asyncio
import threading
import time
import types

import numpy as np

from companion.audio.devices import MicrophoneSource, SpeakerPlayer


class FakeStream:
    """A PortAudio stream: a thread calls ``callback`` every block while it is active and its device plugged in.

    ``stop`` waits for the callback in flight, as ``Pa_StopStream`` does; a callback that raises aborts the
    stream, as in sounddevice. ``callbacks`` counts the calls, ``played`` the non-zero samples an output
    stream was given.
    """

    def __init__(self, backend: FakePortAudio, kind: str, device: int, callback, blocksize: int,
                 samplerate: int) -> None:
        self.backend = backend
        self.kind = kind
        self.device = device
        self.callback = callback
        self.blocksize = blocksize
        self.samplerate = samplerate
        self.active = False
        self.closed = False
        self.callbacks = 0
        self.played = 0
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.closed or not self.backend.initialized:
            raise RuntimeError("Error starting stream: Invalid stream pointer [PaErrorCode -9988]")
        self.active = True
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        status = types.SimpleNamespace(input_overflow=False, output_underflow=False)
        n = self.blocksize
        while self.active and not self.backend.is_unplugged(self.device):
            try:
                if self.kind == "input":
                    self.callback(np.full((n, 1), 0.01, np.float32), n, None, status)
                else:
                    out = np.zeros((n, 1), np.float32)
                    self.callback(out, n, None, status)
                    self.played += int(np.count_nonzero(out))
                    self.backend.consumed += int(np.count_nonzero(out))
            except Exception as err:  # noqa: BLE001 - sounddevice aborts a stream whose callback raises
                self.error = err
                self.active = False
                return
            self.callbacks += 1
            time.sleep(n / self.samplerate)

    def stop(self) -> None:
        self.active = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)

    def close(self) -> None:
        self.stop()
        if not self.closed:
            self.closed = True
            self.backend.calls.append(f"close {self.kind} {self.device}")


class FakePortAudio:
    """Just enough of the sounddevice module, with PortAudio's one state per process.

    Every stream belongs to the library: ``_terminate()`` stops and closes all of them, whoever opened
    them (their callbacks stop, ``active`` turns false), as ``Pa_Terminate`` does, and nothing opens or
    starts again until ``_initialize()``; so a test sees one device's recovery cascade into the other.
    An unplugged device stops calling its stream back and cannot be opened; unlike ALSA, a re-plugged
    device can be opened at once, without re-initialising. ``calls`` records what happened, in order:
    "terminate", "initialize", "open input 0", "close output 1".
    """

    def __init__(self) -> None:
        self.initialized = True
        self.calls: list[str] = []
        self.streams: list[FakeStream] = []
        self.consumed = 0
        self._unplugged: set[int] = set()

    @property
    def terminations(self) -> int:
        return self.calls.count("terminate")

    def unplug(self, device: int) -> None:
        self._unplugged.add(device)

    def replug(self, device: int) -> None:
        self._unplugged.discard(device)

    def is_unplugged(self, device: int) -> bool:
        return device in self._unplugged

    def opened(self, kind: str) -> list[FakeStream]:
        return [s for s in self.streams if s.kind == kind]

    def _check(self, device: int) -> None:
        if not self.initialized:
            raise RuntimeError("PortAudio not initialized [PaErrorCode -10000]")
        if self.is_unplugged(device):
            raise RuntimeError("Invalid device [PaErrorCode -9996]")

    def check_input_settings(self, *, device: int = 0, **_) -> None:
        self._check(device)

    def query_devices(self, *_a):
        return {"name": "Fake USB Audio", "default_samplerate": 16000, "max_input_channels": 1,
                "max_output_channels": 1}

    def _terminate(self) -> None:
        self.calls.append("terminate")
        for stream in self.streams:
            stream.close()
        self.initialized = False

    def _initialize(self) -> None:
        self.calls.append("initialize")
        self.initialized = True

    def _open(self, kind: str, device: int, callback, blocksize: int, samplerate: int) -> FakeStream:
        try:
            self._check(device)
        except RuntimeError as err:
            raise RuntimeError(f"Error opening {kind.capitalize()}Stream: {err}") from None
        stream = FakeStream(self, kind, device, callback, blocksize, samplerate)
        self.streams.append(stream)
        self.calls.append(f"open {kind} {device}")
        return stream

    def InputStream(self, *, device, callback, blocksize, samplerate, **_):  # noqa: N802 - mirrors sounddevice
        return self._open("input", device, callback, blocksize, samplerate)

    def OutputStream(self, *, device, callback, samplerate, blocksize=0, **_):  # noqa: N802 - mirrors sounddevice
        return self._open("output", device, callback, blocksize or int(samplerate * 0.02), samplerate)


def test_microphone_unplugged_and_replugged_recovers_without_exiting():
    backend = FakePortAudio()
    source = MicrophoneSource(0, stall_s=0.3, retry_s=0.1, backend=backend)
    times = []

    async def consume():
        async for frame in source.frames():
            times.append(frame.t)
            if len(times) == 20:
                backend.unplug(0)  # pulled out
                asyncio.get_running_loop().call_later(1.0, backend.replug, 0)  # put back a second later
            if len(times) == 60:
                return

    asyncio.run(asyncio.wait_for(consume(), 20))
    assert source.reconnects >= 1 and backend.terminations >= 1
    gaps = np.diff(times)
    assert gaps.max() > 0.8  # the gap while it was unplugged...
    assert len(times) == 60  # ...and frames came back after it
    assert all(d > 0 for d in gaps)  # timestamps keep moving forward
    assert all(s.closed for s in backend.streams)  # the generator's end closed the last stream


def test_speaker_unplugged_and_replugged_recovers_while_playing():
    backend = FakePortAudio()

    async def scenario():
        player = SpeakerPlayer(0, 16000, stall_s=0.3, retry_s=0.1, backend=backend)
        player.enqueue(np.full(16000 * 4, 0.1, np.float32), 16000)  # 4 s of sound
        await asyncio.sleep(0.5)
        before = backend.consumed
        backend.unplug(0)
        await asyncio.sleep(1.0)
        during = backend.consumed
        backend.replug(0)
        await asyncio.sleep(1.0)
        after = backend.consumed
        await player.drain()
        await player.close()
        return player, before, during, after

    player, before, during, after = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert before > 0 and after > during  # sound flows again after the speaker came back
    assert player.reconnects >= 1
    assert all(s.closed for s in backend.streams)
