"""The robot's loop using a stage of a Wyoming server in the house, with its own model as the fall-back.

``RemoteASR`` and ``RemoteTTS`` stand where the loop expects ``WhisperASR`` and ``PiperTTS`` (the same
``transcribe`` / ``synthesize``): each request goes to the server with a timeout; a server that is down,
refuses, errs or is slow is marked down for ``retry_after_s`` (``[REMOTE_ASR_FAILED]`` /
``[REMOTE_TTS_FAILED]`` in the journal, the state in ``companion doctor``) and the robot's own model
answers the same request at once. The transcript guard is the robot's (``asr.whisper.judge``): a
server's "Thank you." on a noise is dropped as the robot's own Whisper's would be.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
from wyoming.asr import Transcribe, Transcript as WyTranscript
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.handle import Handled, HandledChunk
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize

from companion.asr.whisper import Transcript, judge
from companion.audio.files import from_pcm16, resample, to_pcm16
from companion.audio.frames import PIPELINE_RATE
from companion.llm.generate import GenerationResult, TokenEvent
from companion.tts.piper_voice import Speech
from companion.wyoming.config import RemoteConfig

log = logging.getLogger(__name__)

#: Samples per ``audio-chunk`` sent to an ASR server (0.5 s).
SEND_SAMPLES = PIPELINE_RATE // 2


class RemoteFailed(Exception):
    """The server answered with an ``error`` event, closed the connection, or sent nonsense."""


@dataclass
class LinkState:
    """How a remote stage has been doing (the journal says when it fails and when it is back)."""

    stage: str
    uri: str
    down_until: float = 0.0
    failures: int = 0
    served: int = 0
    last_error: str = ""

    def available(self, now: float) -> bool:
        return now >= self.down_until


class _Remote:
    def __init__(self, stage: str, uri: str, config: RemoteConfig, timeout_s: float, clock=time.monotonic) -> None:
        self.link = LinkState(stage, uri)
        self.config = config
        self.timeout_s = timeout_s
        self._clock = clock

    def _client(self) -> AsyncClient:
        return AsyncClient.from_uri(self.link.uri, connect_timeout=self.config.connect_timeout_s,
                                    read_timeout=self.timeout_s)

    async def _try(self, request):
        """The server's answer, or None after marking it down (the caller then uses its own model)."""
        if not self.link.available(self._clock()):
            return None
        try:
            result = await asyncio.wait_for(request(), timeout=self.config.connect_timeout_s + self.timeout_s)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError, RemoteFailed, ValueError) as err:
            self._failed(err)
            return None
        self._served()
        return result

    def _failed(self, err: BaseException) -> None:
        self.link.failures += 1
        self.link.last_error = f"{type(err).__name__}: {err}"
        self.link.down_until = self._clock() + self.config.retry_after_s
        log.warning("[REMOTE_%s_FAILED] %s at %s failed (%s); the robot's own model answers, and again for %.0f s",
                    self.link.stage.upper(), self.link.stage, _where(self.link.uri), self.link.last_error,
                    self.config.retry_after_s)

    def _served(self) -> None:
        if self.link.down_until:  # it had failed: say it is back
            log.info("remote %s at %s answers again", self.link.stage, _where(self.link.uri))
            self.link.down_until = 0.0
        self.link.served += 1


def _where(uri: str) -> str:
    parsed = urlparse(uri)
    return f"{parsed.hostname}:{parsed.port}" if parsed.scheme == "tcp" else uri


async def _read_until(client: AsyncClient, *types: str):
    while True:
        event = await client.read_event()
        if event is None:
            raise RemoteFailed("the server closed the connection")
        if Error.is_type(event.type):
            err = Error.from_event(event)
            raise RemoteFailed(f"server error {err.code or ''}: {err.text}")
        if event.type in types:
            return event


class RemoteASR(_Remote):
    """Transcription on a Wyoming ASR server, else by ``local``."""

    def __init__(self, uri: str, local, config: RemoteConfig, clock=time.monotonic) -> None:
        super().__init__("asr", uri, config, config.asr_timeout_s, clock)
        self.local = local
        self.config_asr = local.config
        self.executor = local.executor

    async def transcribe(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> Transcript:
        started = time.perf_counter()
        text = await self._try(lambda: self._remote(audio))
        if text is None:
            return await self.local.transcribe(audio, speech_ratio=speech_ratio)
        return Transcript(text=text, no_speech_prob=0.0, avg_logprob=0.0,
                          asr_ms=round((time.perf_counter() - started) * 1000, 1),
                          rejected=judge(text, 0.0, 0.0, speech_ratio, self.config_asr))

    async def _remote(self, audio: np.ndarray) -> str:
        pcm = to_pcm16(audio)
        fmt = dict(rate=PIPELINE_RATE, width=2, channels=1)
        async with self._client() as client:
            await client.write_event(Transcribe(language=self.config_asr.language).event())
            await client.write_event(AudioStart(**fmt).event())
            step = SEND_SAMPLES * 2
            for start in range(0, len(pcm), step):
                await client.write_event(AudioChunk(audio=pcm[start:start + step], **fmt).event())
            await client.write_event(AudioStop().event())
            event = await _read_until(client, "transcript")
        return WyTranscript.from_event(event).text.strip()

    def transcribe_sync(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> Transcript:
        return self.local.transcribe_sync(audio, speech_ratio=speech_ratio)

    def warm(self) -> None:
        self.local.warm()

    def close(self) -> None:
        self.local.close()


class RemoteTTS(_Remote):
    """Speech from a Wyoming TTS server (at the robot's own voice's rate), else from ``local``."""

    def __init__(self, uri: str, local, config: RemoteConfig, clock=time.monotonic) -> None:
        super().__init__("tts", uri, config, config.tts_timeout_s, clock)
        self.local = local
        self.rate = local.rate
        self.language = getattr(local, "language", None)
        self.executor = local.executor

    async def synthesize(self, text: str) -> Speech:
        started = time.perf_counter()
        samples = await self._try(lambda: self._remote(text))
        if samples is None:
            return await self.local.synthesize(text)
        return Speech(samples, self.rate, round((time.perf_counter() - started) * 1000, 1))

    async def _remote(self, text: str) -> np.ndarray:
        converter = AudioChunkConverter(width=2, channels=1)
        parts: list[bytes] = []
        rate = None
        async with self._client() as client:
            await client.write_event(Synthesize(text=text).event())
            while True:
                event = await _read_until(client, "audio-start", "audio-chunk", "audio-stop")
                if AudioStart.is_type(event.type):
                    rate = AudioStart.from_event(event).rate
                elif AudioChunk.is_type(event.type):
                    chunk = AudioChunk.from_event(event)
                    rate = rate or chunk.rate
                    parts.append(converter.convert(chunk).audio)
                else:
                    break
        if rate is None or not parts:
            raise RemoteFailed("no audio in the answer")
        return resample(from_pcm16(b"".join(parts)), rate, self.rate)

    def synthesize_sync(self, text: str) -> Speech:
        return self.local.synthesize_sync(text)

    def warm(self) -> None:
        self.local.warm()

    def close(self) -> None:
        self.local.close()


class RemoteBrain(_Remote):
    """The reply's words from a Wyoming ``handle`` server (``companion wyoming`` on the family's PC, with
    its bigger model), else from ``local``, the robot's own model.

    Only the model's part moves: the robot still plans the turn (input safety, parents' limits, caring
    lines, answers from memory: those never reach the server) and every piece of the server's text passes
    the robot's own output guard before it is spoken, as its own model's would (``reply_chunks``). The
    child's name goes in the context (``guest`` for a voice no voiceprint knows). A server that fails
    before its first words leaves the turn to the robot's own model; one that fails mid-reply ends the
    reply where it stopped."""

    def __init__(self, uri: str, local, config: RemoteConfig, clock=time.monotonic) -> None:
        super().__init__("handle", uri, config, config.handle_timeout_s, clock)
        self.local = local

    def __getattr__(self, name: str):  # everything else is the robot's own model's (tokenizer, warm, prefill...)
        if name == "local":
            raise AttributeError(name)
        return getattr(self.local, name)

    def stream(self, prompt_ids, params, gate=None, avoid=()):
        return self.local.stream(prompt_ids, params, gate, avoid)

    async def stream_plan(self, plan, params, gate=None):
        started = time.perf_counter()
        said, first = [], None
        if self.link.available(self._clock()):
            events = self._events(plan)
            try:
                while True:
                    try:
                        text = await asyncio.wait_for(anext(events), timeout=self.config.connect_timeout_s
                                                      + self.timeout_s)
                    except StopAsyncIteration:
                        break
                    first = first if first is not None else time.perf_counter() - started
                    said.append(text)
                    yield TokenEvent(-1, text if len(said) == 1 else " " + text, len(said) - 1,
                                     time.perf_counter() - started)
                if not said:
                    raise RemoteFailed("the server said nothing")
                self._served()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncio.TimeoutError, RemoteFailed, ValueError) as err:
                self._failed(err)  # before its first words: the robot's own model answers; after: the reply ends
            finally:
                await events.aclose()
        if not said:
            async for item in self.local.stream(plan.prompt, params, gate, plan.avoid):
                yield item
            return
        yield GenerationResult(" ".join(said), (), "stop", len(plan.prompt), 0, first, time.perf_counter() - started)

    async def _events(self, plan):
        """The server's checked pieces of the reply, as they come."""
        context = {"child": plan.child or "child"}
        if plan.guest:
            context["guest"] = True
        async with self._client() as client:
            await client.write_event(WyTranscript(text=plan.heard, context=context).event())
            streamed = False
            while True:
                event = await _read_until(client, "handled-chunk", "handled", "not-handled", "handled-stop")
                if HandledChunk.is_type(event.type):
                    streamed = True
                    text = HandledChunk.from_event(event).text.strip()
                    if text:
                        yield text
                elif Handled.is_type(event.type):
                    if not streamed:  # a server without streaming: its one answer
                        text = (Handled.from_event(event).text or "").strip()
                        if text:
                            yield text
                        return
                elif event.type == "not-handled":
                    raise RemoteFailed("the server did not handle it")
                else:
                    return


async def describe(uri: str, *, timeout_s: float) -> Info:
    """The server's ``info`` (``companion doctor``)."""

    async def ask() -> Info:
        async with AsyncClient.from_uri(uri, connect_timeout=timeout_s, read_timeout=timeout_s) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await _read_until(client, "info"))

    return await asyncio.wait_for(ask(), timeout=timeout_s)


def with_remote(asr, tts, model, config: RemoteConfig):
    """The loop's ASR, TTS and model: the robot's own, or a server's with the robot's own behind it."""
    if config.asr:
        asr = RemoteASR(config.asr, asr, config)
    if config.tts:
        tts = RemoteTTS(config.tts, tts, config)
    if config.handle:
        model = RemoteBrain(config.handle, model, config)
    return asr, tts, model

