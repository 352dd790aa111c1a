"""Remote stages: the robot uses a Wyoming server's ASR/TTS and falls back to its own, at once, when the
server is down, slow or wrong (fake stages behind a real Wyoming server; the real models and a killed
`companion wyoming` process are in tests/test_wyoming_real.py)."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from companion.asr.whisper import ASRConfig, Transcript
from companion.errors import ConfigError
from companion.tts.piper_voice import Speech
from companion.wyoming.config import RemoteConfig
from companion.wyoming.remote import RemoteASR, RemoteTTS, describe
from tests.conftest import free_port
from tests.test_wyoming import FakeASR, _stages, _with_server


class LocalASR:
    config = ASRConfig()
    executor = None

    def __init__(self) -> None:
        self.calls = 0

    async def transcribe(self, audio, *, speech_ratio: float = 1.0) -> Transcript:
        self.calls += 1
        return Transcript("the robot's own words", 0.0, -0.1, 1.0)


class LocalTTS:
    rate = 16_000
    executor = None

    def __init__(self) -> None:
        self.calls = 0

    async def synthesize(self, text: str) -> Speech:
        self.calls += 1
        return Speech(np.zeros(160, np.float32), self.rate, 1.0)


class SlowASR(FakeASR):
    async def transcribe(self, audio, *, speech_ratio: float = 1.0):
        await asyncio.sleep(5)
        return await super().transcribe(audio)


class StockPhraseASR(FakeASR):
    """An upstream server without the robot's guard: Whisper's "Thank you." on a mostly silent clip."""

    async def transcribe(self, audio, *, speech_ratio: float = 1.0):
        return Transcript(" Thank you.", 0.0, 0.0, 5.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _speech(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def test_remote_config_is_checked():
    assert RemoteConfig(asr="tcp://192.168.1.20:10700").asr
    for bad in ("http://pc:10700", "tcp://pc", "pc:10700"):
        with pytest.raises(ValueError):
            RemoteConfig(asr=bad)
    from companion.config import CompanionConfig

    with pytest.raises(ConfigError):
        CompanionConfig.from_dict({"remote": {"tts": "tcp://pc"}})
    with pytest.raises(ConfigError):
        CompanionConfig.from_dict({"remote": {"retry_after_s": 0}})


def test_asr_on_the_server_with_the_robots_own_guard():
    stages = _stages()

    async def body(port):
        local = LocalASR()
        asr = RemoteASR(f"tcp://127.0.0.1:{port}", local, RemoteConfig(asr=f"tcp://127.0.0.1:{port}"))
        got = await asr.transcribe(_speech(1.5))
        assert got.text == "heard 1.5 seconds" and got.rejected is None and local.calls == 0
        assert asr.link.served == 1 and asr.link.failures == 0

    asyncio.run(_with_server(stages, body))


def test_a_dead_server_costs_the_child_nothing_and_is_retried_later(caplog):
    port = free_port()  # nothing listens there: refused at once
    clock = Clock()
    config = RemoteConfig(asr=f"tcp://127.0.0.1:{port}", retry_after_s=30)
    local = LocalASR()
    asr = RemoteASR(config.asr, local, config, clock=clock)

    async def body():
        started = time.perf_counter()
        got = await asr.transcribe(_speech())
        assert got.text == "the robot's own words" and time.perf_counter() - started < 0.5
        assert "[REMOTE_ASR_FAILED]" in caplog.text and asr.link.failures == 1
        caplog.clear()
        clock.t += 10  # within retry_after_s: the server is not even tried
        await asr.transcribe(_speech())
        assert "[REMOTE_ASR_FAILED]" not in caplog.text and asr.link.failures == 1 and local.calls == 2

    with caplog.at_level(logging.WARNING):
        asyncio.run(body())
    # Later, with a server listening there, the robot uses it again.
    stages = _stages()

    async def later(p):
        asr.link.uri = f"tcp://127.0.0.1:{p}"
        clock.t += 31
        got = await asr.transcribe(_speech(2.0))
        assert got.text == "heard 2.0 seconds" and asr.link.down_until == 0.0

    asyncio.run(_with_server(stages, later))


def test_a_slow_server_is_given_up_after_its_timeout(caplog):
    stages = _stages(asr=SlowASR())

    async def body(port):
        config = RemoteConfig(asr=f"tcp://127.0.0.1:{port}", asr_timeout_s=0.3)
        asr = RemoteASR(config.asr, LocalASR(), config)
        started = time.perf_counter()
        got = await asr.transcribe(_speech())
        assert got.text == "the robot's own words" and time.perf_counter() - started < 1.5
        assert "[REMOTE_ASR_FAILED]" in caplog.text and "TimeoutError" in asr.link.last_error

    with caplog.at_level(logging.WARNING):
        asyncio.run(_with_server(stages, body))


def test_a_server_error_and_a_hallucination_on_noise():
    stages = _stages()

    async def body(port):
        config = RemoteConfig(asr=f"tcp://127.0.0.1:{port}")
        asr = RemoteASR(config.asr, LocalASR(), config)
        # The fake server rejects near-silence with an empty transcript: empty is rejected here too.
        got = await asr.transcribe(np.zeros(16_000, np.float32))
        assert got.text == "" and got.rejected == "empty"
        # A server without the guard: its stock phrase on a clip that is mostly not speech is the robot's to drop.
        stock = _stages(asr=StockPhraseASR())

        async def unguarded(p3):
            c3 = RemoteConfig(asr=f"tcp://127.0.0.1:{p3}")
            asr3 = RemoteASR(c3.asr, LocalASR(), c3)
            assert (await asr3.transcribe(_speech(), speech_ratio=0.3)).rejected == "hallucination"
            assert (await asr3.transcribe(_speech(), speech_ratio=0.9)).rejected is None  # a child may say it

        await _with_server(stock, unguarded)
        # A server that serves no asr answers with an error: the robot's own model takes it.
        only_tts = _stages(asr=None)

        async def inner(p2):
            c2 = RemoteConfig(asr=f"tcp://127.0.0.1:{p2}")
            asr2 = RemoteASR(c2.asr, LocalASR(), c2)
            assert (await asr2.transcribe(_speech())).text == "the robot's own words"
            assert "WYOMING_STAGE_NOT_SERVED" in asr2.link.last_error
            info = await describe(c2.asr, timeout_s=2)
            assert not info.asr and info.tts

        await _with_server(only_tts, inner)

    asyncio.run(_with_server(stages, body))


def test_remote_speech_comes_at_the_robots_rate_and_falls_back():
    stages = _stages()  # its voice speaks at 22.05 kHz

    async def body(port):
        config = RemoteConfig(tts=f"tcp://127.0.0.1:{port}")
        local = LocalTTS()
        tts = RemoteTTS(config.tts, local, config)
        speech = await tts.synthesize("Hello!")
        assert speech.rate == 16_000 and local.calls == 0
        assert abs(len(speech.samples) - 600 * 16_000 / 22_050) <= 2  # 600 samples at 22.05 kHz, resampled
        assert float(np.median(speech.samples)) == pytest.approx(0.25, abs=0.01)

    asyncio.run(_with_server(stages, body))
    config = RemoteConfig(tts=f"tcp://127.0.0.1:{free_port()}")
    local = LocalTTS()
    tts = RemoteTTS(config.tts, local, config)
    speech = asyncio.run(tts.synthesize("Hello!"))
    assert local.calls == 1 and len(speech.samples) == 160


class UnsafeBrain:
    """A family server whose model says something no child may hear."""

    def __init__(self, child: str) -> None:
        self.child = child

    async def reply(self, heard: str, on_chunk=None):
        for piece in ("Sure!", "You can take a knife and stab them."):
            await on_chunk(piece)
        from types import SimpleNamespace

        return SimpleNamespace(reply="Sure! You can take a knife and stab them.")


def _remote_reply(port: int | None, heard: str, *, child: str = "Mia", guest: bool = False, local=None):
    from dataclasses import replace

    from companion.brain.guard import reply_chunks
    from companion.llm.sampling import SamplingParams
    from companion.voice.testing import ScriptedBrain, ScriptedModel
    from companion.wyoming.remote import RemoteBrain

    uri = f"tcp://127.0.0.1:{port or free_port()}"
    local = local or ScriptedModel({}, default="The robot's own answer.")
    brain = RemoteBrain(uri, local, RemoteConfig(handle=uri))

    async def run():
        plan = replace(await ScriptedBrain(child=child).plan(heard), child=child, guest=guest)
        return [c async for c in reply_chunks(plan, brain, SamplingParams())]

    return brain, run


def test_the_family_servers_brain_answers_and_the_robot_checks_every_piece():
    stages = _stages()

    async def body(port):
        brain, run = _remote_reply(port, "tell me something")
        chunks = await run()
        assert " ".join(c.text for c in chunks) == "Hello there! You said tell me something."
        assert all(c.source == "model" for c in chunks) and brain.link.served == 1
        assert stages.brains["Mia"].heard == ["tell me something"]  # the child went in the context

    asyncio.run(_with_server(stages, body))
    unsafe = _stages(brain_for=lambda child, guest=False: UnsafeBrain(child or "sam"))

    async def body2(port):
        _, run = _remote_reply(port, "tell me something")
        chunks = await run()
        said = " ".join(c.text for c in chunks)
        assert "knife" not in said and chunks[-1].source == "guard" and chunks[-1].blocked is not None

    asyncio.run(_with_server(unsafe, body2))


def test_a_dead_brain_server_leaves_the_turn_to_the_robots_own_model(caplog):
    brain, run = _remote_reply(None, "tell me something")
    with caplog.at_level(logging.WARNING):
        chunks = asyncio.run(run())
    assert " ".join(c.text for c in chunks) == "The robot's own answer."
    assert brain.link.failures == 1 and "[REMOTE_HANDLE_FAILED]" in caplog.text


def test_a_turn_the_robot_answers_itself_never_reaches_the_server():
    stages = _stages()

    async def body(port):
        brain, run = _remote_reply(port, "i want to kill myself")  # the robot's own input check: an alert
        chunks = await run()
        assert chunks and all(c.source == "line" for c in chunks)
        assert brain.link.served == 0 and "Mia" not in stages.brains

    asyncio.run(_with_server(stages, body))


class StopsMidReplyBrain:
    """A family server that says its first words, then falls over."""

    def __init__(self, child: str) -> None:
        self.child = child

    async def reply(self, heard: str, on_chunk=None):
        await on_chunk("Octopuses have three hearts.")
        raise RuntimeError("the PC went to sleep")


def test_a_brain_server_failing_mid_reply_ends_the_reply_there_and_is_marked_down(caplog):
    stages = _stages(brain_for=lambda child, guest=False: StopsMidReplyBrain(child or "sam"))

    async def body(port):
        brain, run = _remote_reply(port, "tell me about octopuses")
        chunks = await run()
        assert " ".join(c.text for c in chunks) == "Octopuses have three hearts."  # not the local model's too
        assert brain.link.failures == 1 and brain.link.served == 0 and brain.link.down_until > 0
        assert "WYOMING_STAGE_FAILED" in brain.link.last_error

    with caplog.at_level(logging.WARNING):
        asyncio.run(_with_server(stages, body))
    assert "[REMOTE_HANDLE_FAILED]" in caplog.text
