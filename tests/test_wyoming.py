"""``companion wyoming``: the protocol, spoken by the ``wyoming`` library's own client (fake stages here;
tests/test_wyoming_real.py runs the real models and wyoming-bench)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from companion.asr.whisper import Transcript as AsrTranscript
from companion.tts.piper_voice import Speech
from companion.wyoming.info import build_info
from companion.wyoming.server import STAGE_NOT_SERVED, Stages, serve
from tests.conftest import free_port, unit_exposure


class FakeASR:
    """Says how many seconds it heard and at what loudness; rejects near-silence as the guard does."""

    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []

    async def transcribe(self, audio: np.ndarray, *, speech_ratio: float = 1.0) -> AsrTranscript:
        self.heard.append(audio)
        if float(np.abs(audio).max()) < 0.01:
            return AsrTranscript("Thank you.", 0.9, -1.5, 5.0, rejected="no-speech")
        return AsrTranscript(f" heard {len(audio) / 16_000:.1f} seconds", 0.01, -0.2, 5.0)


class FakeTTS:
    rate = 22_050
    language = "en_US"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize(self, text: str) -> Speech:
        self.texts.append(text)
        return Speech(np.full(100 * len(text), 0.25, np.float32), self.rate, 1.0)


class FakeBrain:
    """Replies in two checked pieces, as ``Conversation.reply`` streams them."""

    def __init__(self, child: str) -> None:
        self.child = child
        self.heard: list[str] = []

    async def reply(self, heard: str, on_chunk=None):
        self.heard.append(heard)
        pieces = ["Hello there!", f"You said {heard}."]
        for piece in pieces:
            await on_chunk(piece)
        return SimpleNamespace(reply=" ".join(pieces))


def _manifest(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, description=f"{name} model", hf_id=None)


async def _with_server(stages: Stages, body) -> None:
    port = free_port()
    started = asyncio.Event()
    server = asyncio.create_task(serve(f"tcp://127.0.0.1:{port}", stages, ready=started.set))
    await asyncio.wait_for(started.wait(), 5)
    try:
        await body(port)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def _events(client: AsyncTcpClient, until: str, limit: int = 10_000) -> list:
    out = []
    for _ in range(limit):
        event = await asyncio.wait_for(client.read_event(), 5)
        assert event is not None, "the server closed the connection"
        out.append(event)
        if event.type in (until, "error"):
            return out
    raise AssertionError(f"no {until} event")


def _stages(**kw) -> Stages:
    brains: dict[str, FakeBrain] = {}

    def brain_for(child, guest=False):
        return brains.setdefault(child or "sam", FakeBrain(child or "sam"))

    defaults = dict(asr=FakeASR(), tts=FakeTTS(), brain_for=brain_for, max_audio_s=60.0)
    defaults.update(kw)
    info = build_info(asr=_manifest("whisper-base") if defaults["asr"] else None, asr_languages=["en"],
                      tts=_manifest("piper-voice") if defaults["tts"] else None, tts_language="en_US",
                      llm=_manifest("qwen") if defaults["brain_for"] else None, persona="Pip")
    stages = Stages(info=info, **defaults)
    stages.brains = brains
    return stages


def test_describe_lists_what_is_served_truthfully():
    async def body(port):
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            info = Info.from_event((await _events(client, "info"))[-1])
        assert [p.name for p in info.asr] == ["companion-asr"] and info.asr[0].models[0].name == "whisper-base"
        assert not info.asr[0].supports_transcript_streaming  # the transcript comes once the audio has ended
        assert info.tts[0].supports_synthesize_streaming and info.tts[0].voices[0].languages == ["en_US"]
        assert info.handle[0].supports_handled_streaming and not info.handle[0].supports_home_control
        assert info.handle[0].models[0].name == "qwen"

    asyncio.run(_with_server(_stages(), body))
    only_tts = _stages(asr=None, brain_for=None)
    assert not only_tts.info.asr and not only_tts.info.handle and only_tts.info.tts


def test_audio_in_any_format_is_transcribed_at_16_khz_and_a_rejected_transcript_is_empty():
    stages = _stages()

    async def transcribe(port, pcm: bytes, rate: int, channels: int) -> list:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
            step = 4096
            for i in range(0, len(pcm), step):
                await client.write_event(AudioChunk(rate=rate, width=2, channels=channels, audio=pcm[i:i + step]).event())
            await client.write_event(AudioStop().event())
            return await _events(client, "transcript")

    async def body(port):
        t = np.arange(2 * 8000) / 8000  # 2 s at 8 kHz, stereo
        mono = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
        got = await transcribe(port, np.repeat(mono, 2).tobytes(), 8000, 2)
        assert Transcript.from_event(got[-1]).text == "heard 2.0 seconds"
        assert abs(len(stages.asr.heard[-1]) - 32_000) <= 8  # converted to 16 kHz mono
        quiet = np.zeros(16_000, "<i2").tobytes()
        got = await transcribe(port, quiet, 16_000, 1)
        assert Transcript.from_event(got[-1]).text == ""  # "Thank you." on silence is Whisper's, not the child's
        long = (0.2 * 32767 * np.ones(70 * 16_000)).astype("<i2").tobytes()  # a 70 s monologue: the last 60 s
        got = await transcribe(port, long, 16_000, 1)
        assert Transcript.from_event(got[-1]).text == "heard 60.0 seconds"

    asyncio.run(_with_server(stages, body))


def test_speech_comes_back_whole_or_a_sentence_at_a_time_while_the_text_streams():
    stages = _stages()

    async def body(port):
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Synthesize(text="Hello there.").event())
            got = await _events(client, "audio-stop")
        assert got[0].type == "audio-start" and AudioStart.from_event(got[0]).rate == 22_050
        samples = sum(len(AudioChunk.from_event(e).audio) // 2 for e in got if e.type == "audio-chunk")
        assert samples == 100 * len("Hello there.")
        # Two sentences, not streamed: one audio cycle, its first audio sent once the first clause is made.
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Synthesize(text="Hello there, my friend. How are you today?").event())
            got = await _events(client, "audio-stop")
        assert [e.type for e in got].count("audio-start") == 1
        assert stages.tts.texts[1:] == ["Hello there, my friend.", "How are you today?"]
        stages.tts.texts.clear()
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(SynthesizeStart().event())
            for piece in ("Hello there, my ", "friend. How are", " you today?"):
                await client.write_event(SynthesizeChunk(text=piece).event())
            # Sent for servers without streaming: ignored here, or the text would be said twice.
            await client.write_event(Synthesize(text="Hello there, my friend. How are you today?").event())
            await client.write_event(SynthesizeStop().event())
            got = await _events(client, "synthesize-stopped")
        assert [e.type for e in got].count("audio-start") == 2 and got[-1].type == SynthesizeStopped().event().type
        assert stages.tts.texts == ["Hello there, my friend.", "How are you today?"]

    asyncio.run(_with_server(stages, body))


def test_the_brain_answers_a_transcript_for_the_child_in_context_in_checked_pieces():
    stages = _stages()

    async def body(port):
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Transcript(text="hi robot", context={"child": "Mia"}).event())
            got = await _events(client, "handled-stop")
        types = [e.type for e in got]
        assert types == ["handled-start", "handled-chunk", "handled-chunk", "handled", "handled-stop"]
        assert HandledStart.from_event(got[0]).context == {"child": "Mia"}
        assert [HandledChunk.from_event(e).text for e in got[1:3]] == ["Hello there!", "You said hi robot."]
        assert Handled.from_event(got[3]).text == "Hello there! You said hi robot."
        assert HandledStop.from_event(got[4]) is not None
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Transcript(text="and me").event())  # no child named: the default child
            got = await _events(client, "handled-stop")
        assert Handled.from_event(got[-2]).context == {"child": "sam"}

    asyncio.run(_with_server(stages, body))
    assert stages.brains["Mia"].heard == ["hi robot"] and stages.brains["sam"].heard == ["and me"]


def test_a_stage_not_served_is_a_coded_error_and_the_connection_goes_on():
    stages = _stages(asr=None, brain_for=None)

    async def body(port):
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Transcribe().event())
            err = Error.from_event((await _events(client, "error"))[-1])
            assert err.code == STAGE_NOT_SERVED and "asr" in err.text
            await client.write_event(Transcript(text="hello").event())
            err = Error.from_event((await _events(client, "error"))[-1])
            assert err.code == STAGE_NOT_SERVED
            await client.write_event(Synthesize(text="Still here.").event())  # the same connection still works
            assert (await _events(client, "audio-stop"))[-1].type == "audio-stop"

    asyncio.run(_with_server(stages, body))


@pytest.mark.parametrize("text, stages", [("asr,tts", {"asr", "tts"}), ("handle", {"handle"}),
                                          ("asr, tts ,handle", {"asr", "tts", "handle"})])
def test_stages_flag(text, stages):
    from companion.cli.wyoming_cmd import parse_stages

    assert parse_stages(text) == stages


def test_stages_flag_refuses_an_unknown_stage():
    from companion.cli.wyoming_cmd import parse_stages
    from companion.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_stages("asr,wake")


@pytest.mark.skipif(__import__("shutil").which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_wyoming_unit_verifies_is_hardened_and_is_off_by_default(tmp_path):
    from pathlib import Path

    systemd = Path(__file__).resolve().parents[1] / "systemd"
    source = systemd / "companion-wyoming.service"
    assert unit_exposure(source, tmp_path) <= 3.0
    text = source.read_text()
    assert "IPAddressDeny=any" in text and "192.168.0.0/16" in text and "PrivateDevices=yes" in text
    install = (systemd / "install.sh").read_text()
    assert "companion-wyoming.service" in install
    assert "enable --now companion-wyoming" not in install  # installed, never started unasked
