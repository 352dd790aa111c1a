"""``companion wyoming``: the robot's stages served over the Wyoming protocol.

One handler per connection (Home Assistant opens one per request); the stages are shared and loaded
once. The same objects as the voice loop, no second pipeline:

- ``asr``: ``transcribe`` + ``audio-start/chunk/stop`` -> ``transcript``. Audio in any PCM format is
  converted to 16 kHz mono; at most ``max_audio_s`` is kept (the last of a longer stream, as the loop
  keeps the last ``max_heard_s``). A transcript the guard rejects (empty, no speech, a Whisper
  hallucination on noise) is an empty ``transcript``, so a satellite does not act on it.
- ``tts``: ``synthesize`` -> ``audio-start/chunk*/stop``; streaming ``synthesize-start/chunk*/stop`` ->
  the audio of each clause as soon as its text is complete (the loop's own clause splitter), then
  ``synthesize-stopped``. The ``synthesize`` sent during a stream for old servers is ignored.
- ``handle``: ``transcript`` -> the child-safe brain (``Conversation.reply``: input safety, the
  child's memory and limits, the persona, the model, the output guard) -> ``handled-start``,
  ``handled-chunk`` per checked piece, ``handled``, ``handled-stop``. ``context.child`` names the
  child (else ``[children] default``), ``context.guest`` a voice the robot does not know (nothing of
  any child's memory is used); the reply's context carries them back.

Errors are ``error`` events with a stable code, never a dropped connection without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop
from wyoming.info import Describe, Info
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from companion.audio.files import from_pcm16, to_pcm16
from companion.audio.frames import PIPELINE_RATE
from companion.errors import CompanionError
from companion.tts.clauses import ClauseSplitter

log = logging.getLogger(__name__)

#: Samples per ``audio-chunk`` the server sends (~46 ms at piper's 22.05 kHz).
CHUNK_SAMPLES = 1024

#: Error codes of the ``error`` events.
STAGE_NOT_SERVED = "WYOMING_STAGE_NOT_SERVED"
PROTOCOL_ERROR = "WYOMING_PROTOCOL_ERROR"
STAGE_FAILED = "WYOMING_STAGE_FAILED"
CHILD_NAME_INVALID = "CHILD_NAME_INVALID"


@dataclass
class Stages:
    """What the server serves (None: not this stage). ``brain_for(child)`` gives that child's
    conversation (opened once, kept for the server's life); ``lock`` makes one reply at a time."""

    info: Info
    asr: object | None = None
    tts: object | None = None
    brain_for: Callable[[str | None, bool], object] | None = None
    max_audio_s: float = 60.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Recording:
    """The audio of one ``transcribe``: converted to 16 kHz mono 16-bit, the last ``max_s`` kept."""

    def __init__(self, max_s: float) -> None:
        self.converter = AudioChunkConverter(rate=PIPELINE_RATE, width=2, channels=1)
        self.chunks: deque[bytes] = deque()
        self.bytes = 0
        self.max_bytes = int(max_s * PIPELINE_RATE) * 2
        self.cut = False

    def add(self, chunk: AudioChunk) -> None:
        data = self.converter.convert(chunk).audio
        self.chunks.append(data)
        self.bytes += len(data)
        while self.bytes - len(self.chunks[0]) >= self.max_bytes:
            self.bytes -= len(self.chunks.popleft())
            self.cut = True

    def samples(self) -> np.ndarray:
        return from_pcm16(b"".join(self.chunks)[-self.max_bytes:])


class CompanionHandler(AsyncEventHandler):
    """One client connection."""

    def __init__(self, reader, writer, stages: Stages) -> None:
        super().__init__(reader, writer)
        self.stages = stages
        self._recording: _Recording | None = None
        self._transcribing = False
        #: The clause splitter of a ``synthesize-start`` stream in progress (None: none).
        self._stream: ClauseSplitter | None = None
        self._stream_started = False

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event(self.stages.info.event())
            elif Transcribe.is_type(event.type):
                return await self._transcribe_start()
            elif AudioStart.is_type(event.type) and self._transcribing:
                self._recording = _Recording(self.stages.max_audio_s)
            elif AudioChunk.is_type(event.type) and self._recording is not None:
                self._recording.add(AudioChunk.from_event(event))
            elif AudioStop.is_type(event.type) and self._recording is not None:
                await self._transcribe()
            elif SynthesizeStart.is_type(event.type):
                return await self._synthesize_start()
            elif SynthesizeChunk.is_type(event.type) and self._stream is not None:
                for piece in self._stream.push(SynthesizeChunk.from_event(event).text):
                    await self._speak([piece])
            elif SynthesizeStop.is_type(event.type) and self._stream is not None:
                for piece in self._stream.flush():
                    await self._speak([piece])
                self._stream = None
                await self.write_event(SynthesizeStopped().event())
            elif Synthesize.is_type(event.type):
                if self._stream is None:  # during a stream, it is the copy for servers without streaming
                    return await self._synthesize(Synthesize.from_event(event).text)
            elif Transcript.is_type(event.type):
                return await self._handle(Transcript.from_event(event))
        except CompanionError as err:
            await self._error(err.message, err.code)
        except Exception as err:  # noqa: BLE001 - a failed request is answered, the server goes on
            log.exception("[%s] a Wyoming request failed", STAGE_FAILED)
            await self._error(f"{type(err).__name__}: {err}", STAGE_FAILED)
        return True

    async def _error(self, text: str, code: str) -> None:
        await self.write_event(Error(text=text, code=code).event())

    # -- asr -------------------------------------------------------------------------------
    async def _transcribe_start(self) -> bool:
        if self.stages.asr is None:
            await self._error("this server does not transcribe (started without asr)", STAGE_NOT_SERVED)
            return True
        self._transcribing, self._recording = True, None
        return True

    async def _transcribe(self) -> None:
        recording, self._recording, self._transcribing = self._recording, None, False
        audio = recording.samples()
        if recording.cut:
            log.warning("[AUDIO_TOO_LONG] a Wyoming transcribe request sent more than %.0f s; the last %.0f s "
                        "were transcribed", self.stages.max_audio_s, self.stages.max_audio_s)
        text = ""
        if audio.size >= PIPELINE_RATE // 10:
            transcript = await self.stages.asr.transcribe(audio)
            if transcript.rejected:
                log.info("wyoming asr: transcript dropped (%s)", transcript.rejected)
            else:
                text = transcript.text.strip()
        await self.write_event(Transcript(text=text, language="en").event())

    # -- tts -------------------------------------------------------------------------------
    async def _synthesize_start(self) -> bool:
        if self.stages.tts is None:
            await self._error("this server does not speak (started without tts)", STAGE_NOT_SERVED)
            return True
        self._stream = ClauseSplitter()
        return True

    async def _synthesize(self, text: str) -> bool:
        """One ``audio-start``/``audio-chunk``*/``audio-stop`` cycle, its first audio sent once the first
        clause is synthesised (not the whole text: what wyoming-piper does too)."""
        if self.stages.tts is None:
            await self._error("this server does not speak (started without tts)", STAGE_NOT_SERVED)
            return True
        splitter = ClauseSplitter()
        await self._speak(splitter.push(text) + splitter.flush())
        return True

    async def _speak(self, pieces: list[str]) -> None:
        """The pieces of text as one ``audio-start``/``audio-chunk``*/``audio-stop`` cycle, each piece's audio
        sent as soon as it is synthesised."""
        fmt = None
        for piece in pieces:
            speech = await self.stages.tts.synthesize(piece)
            if fmt is None:
                fmt = dict(rate=speech.rate, width=2, channels=1)
                await self.write_event(AudioStart(**fmt).event())
            for start in range(0, len(speech.samples), CHUNK_SAMPLES):
                await self.write_event(AudioChunk(audio=to_pcm16(speech.samples[start:start + CHUNK_SAMPLES]),
                                                  **fmt).event())
        if fmt is None:  # nothing to say (empty text): an empty cycle, so the client is not left waiting
            await self.write_event(AudioStart(rate=self.stages.tts.rate, width=2, channels=1).event())
        await self.write_event(AudioStop().event())

    # -- handle ----------------------------------------------------------------------------
    async def _handle(self, transcript: Transcript) -> bool:
        if self.stages.brain_for is None:
            await self._error("this server does not answer (started without handle)", STAGE_NOT_SERVED)
            return True
        context = dict(transcript.context or {})
        child = context.get("child")
        if child is not None and not isinstance(child, str):
            await self._error("context.child must be a child's name", CHILD_NAME_INVALID)
            return True
        brain = self.stages.brain_for(child, context.get("guest") is True)
        context["child"] = brain.child
        await self.write_event(HandledStart(context=context).event())

        async def on_chunk(text: str) -> None:
            await self.write_event(HandledChunk(text=text).event())

        async with self.stages.lock:
            reply = await brain.reply(transcript.text, on_chunk=on_chunk)
        await self.write_event(Handled(text=reply.reply, context=context).event())
        await self.write_event(HandledStop().event())
        return True


async def serve(uri: str, stages: Stages, *, ready: Callable[[], None] | None = None) -> None:
    """Serve on ``uri`` (``tcp://host:port``, ``unix://path``) until SIGTERM/SIGINT or cancellation;
    ``ready()`` once the socket listens."""
    server = AsyncServer.from_uri(uri)
    await server.start(lambda r, w: CompanionHandler(r, w, stages))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        await server.stop()
