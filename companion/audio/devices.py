"""Real sound devices through sounddevice (PortAudio): a microphone source and a speaker player.

The PortAudio callbacks do nothing but hand samples to the event loop
(``call_soon_threadsafe``) or take the next block from a bounded deque.

PortAudio's state is one per process: ``Pa_Terminate`` closes every stream the
process holds, the other device's too. So the two devices recover independently:
each closes and re-opens only its own stream, and PortAudio is re-initialised only
while no stream is open (``OpenStreams``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator

import numpy as np

from companion.audio.frames import PIPELINE_RATE, AudioFrame
from companion.audio.sinks import Player
from companion.errors import CompanionError

log = logging.getLogger(__name__)


class AudioDeviceError(CompanionError):
    code = "AUDIO_DEVICE_ERROR"


def sounddevice():
    try:
        import sounddevice as sd
    except OSError as err:
        raise AudioDeviceError(f"the PortAudio library is missing ({err}); on Debian/Raspberry Pi OS: "
                               f"sudo apt install libportaudio2", code="AUDIO_BACKEND_MISSING") from err
    return sd


def find_device(devices: list[dict], hint: str | int | None, kind: str, default: int | None,
                hints: tuple[str, ...] = ()) -> int:
    """Index of the device matching ``hint`` (index or name fragment) with ``kind`` channels; with no hint,
    the first of the profile's ``hints`` that is present, else the default."""
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    usable = [(i, d) for i, d in enumerate(devices) if d.get(key, 0) > 0]
    names = ", ".join(f"{i}: {d['name']}" for i, d in usable) or "none"
    if hint is None or hint == "":
        for soft in hints:
            for i, d in usable:
                if soft.lower() in d["name"].lower():
                    return i
        if default is not None and default >= 0 and any(i == default for i, _ in usable):
            return default
        if usable:
            return usable[0][0]
        code = "AUDIO_NO_MICROPHONE" if kind == "input" else "AUDIO_NO_SPEAKER"
        raise AudioDeviceError(f"no {kind} sound device found; available: {names}", code=code)
    if isinstance(hint, int) or str(hint).isdigit():
        idx = int(hint)
        if any(i == idx for i, _ in usable):
            return idx
    else:
        for i, d in usable:
            if str(hint).lower() in d["name"].lower():
                return i
    raise AudioDeviceError(f"{kind} device {hint!r} not found; available: {names}", code="AUDIO_DEVICE_NOT_FOUND")


class OpenStreams:
    """The streams this process holds open, per PortAudio backend (the ``sounddevice`` module).

    Re-initialising PortAudio (``_terminate`` + ``_initialize``) is what makes it enumerate the
    sound cards again, so a USB device that was pulled out and put back, perhaps under a new
    index, can only be found after it. But ``Pa_Terminate`` also closes every stream of the
    process: the microphone re-initialising would silence the speaker mid-sentence, the speaker
    doing it would drop the child's words and stall the microphone. So a recovering device
    re-initialises only when no other stream is open; otherwise it just retries opening its
    device with PortAudio's current device list. The trade-off: while the other device's stream
    stays open, a re-plugged device is found only if PortAudio still knows it (on ALSA it comes
    back under the same card number unless another card took it, which is the common case); a
    device that comes back as something PortAudio has never seen is found at the first retry
    after the other stream has closed too.

    Opening, closing and re-initialising hold one lock, so no stream can be opened between the
    check that none is open and the re-initialisation that would close it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: id(backend) -> (backend, its open streams); the backend is held so its id is not reused.
        self._open: dict[int, tuple[object, set]] = {}

    def open(self, sd, make):
        """``make()`` opens and starts a stream of ``sd``; the stream is counted as open until ``close``."""
        with self._lock:
            stream = make()
            self._open.setdefault(id(sd), (sd, set()))[1].add(stream)
            return stream

    def close(self, sd, stream) -> None:
        with self._lock:
            entry = self._open.get(id(sd))
            if entry is not None:
                entry[1].discard(stream)
                if not entry[1]:
                    del self._open[id(sd)]
            _close(stream)

    def count(self, sd) -> int:
        with self._lock:
            entry = self._open.get(id(sd))
            return len(entry[1]) if entry else 0

    def reinitialise_if_alone(self, sd) -> bool:
        """Re-initialise PortAudio (to see re-plugged devices) when no stream is open; True if it did."""
        with self._lock:
            if self.count(sd):
                return False
            sd._terminate()
            sd._initialize()
            return True


#: The process's streams (PortAudio has one state per process, so one registry).
OPEN_STREAMS = OpenStreams()


class MicrophoneSource:
    """16 kHz mono frames from a sound card; overflows are counted, never silently ignored.

    A microphone that stops delivering (no callback for ``stall_s``) or errors is closed and
    reopened every ``retry_s`` until it is back (a USB microphone pulled out and put back); the
    loop never sees an exception for it. PortAudio is re-initialised before a retry only when no
    other stream (the speaker's) is open: see ``OpenStreams`` for why and for the trade-off.
    """

    def __init__(self, device: int, *, block_s: float = 0.02, max_queued: int = 250, stall_s: float = 2.0,
                 retry_s: float = 3.0, backend=None, resolve=None) -> None:
        self.device = device
        self.block_s = block_s
        self.max_queued = max_queued  # 5 s at 20 ms: the bound on audio waiting for the loop
        self.stall_s = stall_s
        self.retry_s = retry_s
        self.overflows = 0
        self.reconnects = 0
        self._backend = backend
        #: Finds the device again after a reconnect (its index can change); default: the same index.
        self._resolve = resolve or (lambda: self.device)

    def _open(self, sd, loop, queue):
        rate = PIPELINE_RATE
        try:
            sd.check_input_settings(device=self.device, samplerate=PIPELINE_RATE, channels=1, dtype="float32")
        except Exception:  # noqa: BLE001 - the device cannot do 16 kHz: record at its own rate, resample
            rate = int(sd.query_devices(self.device, "input")["default_samplerate"])

        def put(samples: np.ndarray) -> None:
            if queue.qsize() >= self.max_queued:
                queue.get_nowait()
                self.overflows += 1
            queue.put_nowait(samples)

        def callback(indata, _frames, _time, status) -> None:
            if status.input_overflow:
                self.overflows += 1
            loop.call_soon_threadsafe(put, indata[:, 0].copy())

        def make():
            stream = sd.InputStream(device=self.device, samplerate=rate, channels=1, dtype="float32",
                                    blocksize=int(rate * self.block_s), callback=callback)
            _start(stream)
            return stream

        return OPEN_STREAMS.open(sd, make), rate

    async def _reopen(self, sd, loop, queue):
        while True:
            try:
                if not OPEN_STREAMS.reinitialise_if_alone(sd):
                    log.debug("[AUDIO_INPUT_LOST] another stream is open: retrying microphone %s without "
                              "re-initialising PortAudio", self.device)
                self.device = self._resolve()
                opened = self._open(sd, loop, queue)
                self.reconnects += 1
                log.warning("[AUDIO_INPUT_BACK] microphone %s is back", self.device)
                return opened
            except Exception as err:  # noqa: BLE001 - PortAudio says "no device" in many ways
                log.warning("[AUDIO_INPUT_LOST] microphone unavailable (%s); retrying in %.0f s", err, self.retry_s)
                await asyncio.sleep(self.retry_s)

    async def frames(self) -> AsyncIterator[AudioFrame]:
        sd = self._backend or sounddevice()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue()
        try:
            stream, rate = self._open(sd, loop, queue)
        except Exception as err:  # noqa: BLE001
            raise AudioDeviceError(f"cannot open microphone {self.device}: {err}", code="AUDIO_INPUT_FAILED") from err
        resampler = None
        sent = 0
        t0 = None
        try:
            while True:
                try:
                    samples = await asyncio.wait_for(queue.get(), self.stall_s)
                except asyncio.TimeoutError:
                    log.warning("[AUDIO_INPUT_LOST] no audio from microphone %s for %.1f s; reopening",
                                self.device, self.stall_s)
                    OPEN_STREAMS.close(sd, stream)
                    stream, rate = await self._reopen(sd, loop, queue)
                    resampler = None
                    continue
                if rate != PIPELINE_RATE:
                    import av

                    if resampler is None:
                        resampler = av.AudioResampler(format="flt", layout="mono", rate=PIPELINE_RATE)
                    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
                    frame.sample_rate = rate
                    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
                if samples.size == 0:
                    continue
                now = loop.time()
                if t0 is None or now - (t0 + sent / PIPELINE_RATE) > 1.0:  # first block, or after a gap
                    t0, sent = now - samples.size / PIPELINE_RATE, 0
                yield AudioFrame.of(samples, PIPELINE_RATE, t0 + sent / PIPELINE_RATE)
                sent += samples.size
        finally:
            OPEN_STREAMS.close(sd, stream)


def _start(stream) -> None:
    """Start a just-opened stream; one that cannot start is closed, not leaked."""
    try:
        stream.start()
    except BaseException:
        _close(stream)
        raise


def _close(stream) -> None:
    try:
        stream.stop()
        stream.close()
    except Exception:  # noqa: BLE001 - a vanished device may fail to close; it is gone either way
        pass


class SpeakerPlayer(Player):
    """Plays through a sound card; the device callback takes blocks from a short bounded deque.

    A speaker that stops asking for audio (no callback for ``stall_s`` while we play) or fails is
    reopened every ``retry_s``; meanwhile playback goes on in time (to nowhere), so the loop never
    stalls on a missing speaker. PortAudio is re-initialised before a retry only when no other
    stream (the microphone's) is open: see ``OpenStreams``.
    """

    def __init__(self, device: int, rate: int, *, stall_s: float = 2.0, retry_s: float = 3.0, backend=None,
                 resolve=None, **kwargs) -> None:
        super().__init__(rate, **kwargs)
        self._sd = backend or sounddevice()
        self.device = device
        self.stall_s = stall_s
        self.retry_s = retry_s
        self.reconnects = 0
        self._resolve = resolve or (lambda: self.device)
        self._blocks: deque[np.ndarray] = deque(maxlen=50)
        self._current = np.zeros(0, dtype=np.float32)
        self._last_callback = time.monotonic()
        self._next_retry = 0.0
        self._stream = None
        try:
            self._open()
        except Exception as err:  # noqa: BLE001
            raise AudioDeviceError(f"cannot open speaker {device}: {err}", code="AUDIO_OUTPUT_FAILED") from err

    def _open(self) -> None:
        def make():
            stream = self._sd.OutputStream(device=self.device, samplerate=self.rate, channels=1, dtype="float32",
                                           callback=self._callback)
            _start(stream)
            return stream

        self._stream = OPEN_STREAMS.open(self._sd, make)
        self._last_callback = time.monotonic()

    def _callback(self, outdata, frames, _time, status) -> None:
        self._last_callback = time.monotonic()
        if status.output_underflow:
            log.debug("output underflow")
        out = outdata[:, 0]
        filled = 0
        while filled < frames:
            if self._current.size == 0:
                if not self._blocks:
                    break
                self._current = self._blocks.popleft()
            n = min(frames - filled, self._current.size)
            out[filled:filled + n] = self._current[:n]
            self._current = self._current[n:]
            filled += n
        out[filled:] = 0.0

    def _write_device(self, block: np.ndarray) -> None:
        now = time.monotonic()
        if self._stream is None or now - self._last_callback > self.stall_s:
            self._recover(now)
        self._blocks.append(block)

    def _recover(self, now: float) -> None:
        if now < self._next_retry:
            return
        self._next_retry = now + self.retry_s
        log.warning("[AUDIO_OUTPUT_LOST] speaker %s stopped; reopening", self.device)
        if self._stream is not None:
            OPEN_STREAMS.close(self._sd, self._stream)
            self._stream = None
        try:
            if not OPEN_STREAMS.reinitialise_if_alone(self._sd):
                log.debug("[AUDIO_OUTPUT_LOST] another stream is open: retrying speaker %s without "
                          "re-initialising PortAudio", self.device)
            self.device = self._resolve()
            self._open()
            self.reconnects += 1
            log.warning("[AUDIO_OUTPUT_BACK] speaker %s is back", self.device)
        except Exception as err:  # noqa: BLE001 - still unplugged: try again later
            log.warning("[AUDIO_OUTPUT_LOST] speaker unavailable (%s); retrying in %.0f s", err, self.retry_s)

    def _halt_device(self) -> None:
        self._blocks.clear()
        self._current = np.zeros(0, dtype=np.float32)

    async def close(self) -> None:
        await super().close()
        if self._stream is not None:
            OPEN_STREAMS.close(self._sd, self._stream)
            self._stream = None
