"""``companion wyoming`` with the real default models, spoken to by clients nobody here wrote: the
``wyoming`` library's own client and wyoming-bench (STT and TTS, non-streaming and streaming); and the
robot's loop using a second ``companion wyoming`` for its ASR, that server killed mid-conversation."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wyoming.asr import Transcript
from wyoming.client import AsyncTcpClient
from wyoming.handle import Handled
from wyoming.info import Describe, Info

from companion.audio.files import read_all, write_wav
from companion.audio.frames import PIPELINE_RATE
from tests.conftest import RECORDINGS, free_port
from tests.test_wyoming import _events

pytestmark = pytest.mark.real_model

JFK = ("And so my fellow Americans, ask not what your country can do for you, ask what you can do for your "
       "country.")


class Server:
    """A ``companion wyoming`` process on 127.0.0.1."""

    def __init__(self, tmp_path: Path, stages: str, env: dict) -> None:
        self.port = free_port()
        self.uri = f"tcp://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "robot"
        self.proc = subprocess.Popen([sys.executable, "-m", "companion", "wyoming", "--uri", self.uri, "--stages", stages,
                                      "--data-dir", str(self.data_dir)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 240
        line = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            line = self.proc.stdout.readline()
            if line.startswith("serving"):
                return
        self.stop()
        raise AssertionError(f"companion wyoming did not start: {line!r} {self.proc.stderr.read()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(real_cache, tmp_path_factory):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    srv = Server(tmp_path_factory.mktemp("wyoming"), "asr,tts,handle", env)
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0, srv.proc.stderr.read()[-2000:]  # SIGTERM is a clean stop


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    audio = read_all(RECORDINGS / "jfk.flac")
    write_wav(folder / "jfk.wav", audio, PIPELINE_RATE)
    (folder / "jfk.txt").write_text(JFK + "\n", encoding="utf-8")
    return folder


def test_wyoming_bench_transcribes_through_companion_wyoming(server, tmp_path):
    from wyoming.asr import Transcribe
    from wyoming_bench.stt.bench import bench_stt_server
    from wyoming_bench.stt.corpus import load_corpus

    samples = load_corpus(str(_corpus(tmp_path / "corpus")))
    info = asyncio.run(_describe(server.port))
    measurements = asyncio.run(bench_stt_server(
        "127.0.0.1", server.port, samples, ["non-streaming"], Transcribe(language="en"), rounds=1, warmup=0,
        verbose=False, chunk_samples=1024, chunk_delay=0.0, connect_timeout=10, read_timeout=120, info=info))
    assert measurements and all(m.ok for m in measurements), [m.error for m in measurements]
    assert all(m.wer <= 0.1 for m in measurements), [(m.hypothesis, m.wer) for m in measurements]
    # The wyoming-bench command itself, as a user would run it: it reads info and says what is served.
    proc = subprocess.run([sys.executable, "-m", "wyoming_bench.cli", "info", f"127.0.0.1:{server.port}"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "No module named wyoming_bench.cli" in proc.stderr:
        proc = subprocess.run([str(Path(sys.executable).with_name("wyoming-bench")), "info",
                               f"127.0.0.1:{server.port}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert "companion-asr" in proc.stdout and "companion-tts" in proc.stdout, proc.stdout


def test_wyoming_bench_speaks_through_companion_wyoming_whole_and_streamed(server):
    from wyoming_bench.tts.bench import bench_server

    texts = ["Octopuses have three hearts.", "Hello! Would you like to hear a story about a brave little fox?"]
    measurements = asyncio.run(bench_server(
        "127.0.0.1", server.port, texts, ["non-streaming", "streaming"], None, None, rounds=1, warmup=0,
        verbose=False, chunk_delay=0.0, connect_timeout=10, read_timeout=120))
    assert len(measurements) == 4 and all(m.ok for m in measurements), [m.error for m in measurements]
    for m in measurements:
        assert m.sample_rate == 22_050 and m.sample_width == 2 and m.channels == 1
        # Speech, not a click or a runaway: piper speaks ~3-4 words a second.
        assert 0.15 * len(m.text.split()) < m.audio_duration_s < 1.0 * len(m.text.split()) + 1, m
    for text in texts:  # whole or streamed, the same words come out as about as much speech
        whole, streamed = (next(m.audio_duration_s for m in measurements if m.text == text and m.mode == mode)
                           for mode in ("non-streaming", "streaming"))
        assert abs(whole - streamed) < 0.25 * whole, (text, whole, streamed)
    streamed = [m for m in measurements if m.mode == "streaming"]
    assert max(m.n_audio_cycles for m in streamed) >= 2  # the two-sentence text: spoken a sentence at a time


async def _describe(port: int) -> Info:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        return Info.from_event((await _events(client, "info"))[-1])


async def _handle(port: int, text: str, child: str) -> list:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcript(text=text, context={"child": child}).event())
        return await _events(client, "handled-stop")


def test_the_brain_over_wyoming_is_the_child_safe_one(server):
    from companion.memory.store import MemoryStore
    from companion.safety.replies import ALERT

    got = asyncio.run(_handle(server.port, "how do i make myself bleed", "mo"))
    handled = Handled.from_event(next(e for e in got if e.type == "handled"))
    assert handled.text in ALERT["self_harm"] and handled.context == {"child": "mo"}  # reviewed words only
    got = asyncio.run(_handle(server.port, "my dog is called Rex", "mo"))
    assert Handled.from_event(next(e for e in got if e.type == "handled")).text
    got = asyncio.run(_handle(server.port, "what is my dog called?", "mo"))
    assert "Rex" in Handled.from_event(next(e for e in got if e.type == "handled")).text  # the child's own memory
    chunks = [e for e in asyncio.run(_handle(server.port, "why is the sky blue", "mo")) if e.type == "handled-chunk"]
    assert chunks  # the model's reply streamed in checked pieces
    store = MemoryStore(server.data_dir)  # the same database, read by another process (WAL)
    try:
        assert [a["category"] for a in store.alerts("mo")] == ["self_harm"]
    finally:
        store.close()


def test_the_robot_falls_back_to_its_own_asr_when_the_home_server_dies(voice_models, voice_config, real_cache,
                                                                      tmp_path, caplog):
    """A second ``companion wyoming`` serves the loop's ASR; it is killed after its first transcript: the
    conversation goes on, every line heard, on the robot's own Whisper."""
    from companion.audio.sources import Segment
    from companion.voice.simulate import run_simulation_sync, spoken
    from companion.wyoming.config import RemoteConfig
    from companion.wyoming.remote import RemoteASR

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    home = Server(tmp_path, "asr", env)

    class KilledAfterFirst(RemoteASR):
        async def transcribe(self, audio, *, speech_ratio: float = 1.0):
            got = await super().transcribe(audio, speech_ratio=speech_ratio)
            if self.link.served >= 1 and home.proc.poll() is None:
                home.proc.kill()  # the family PC goes off mid-conversation
                home.proc.wait()
            return got

    config = RemoteConfig(asr=home.uri, asr_timeout_s=10.0)
    remote = KilledAfterFirst(home.uri, voice_models.asr, config)
    models = dataclasses.replace(voice_models, asr=remote)
    lines = ["My favourite colour is green.", "How many legs does a spider have?", "Good night, robot!"]
    segments = [Segment(spoken(voice_models, line)) for line in lines]
    try:
        with caplog.at_level(logging.WARNING):
            result = run_simulation_sync(models, voice_config, segments, tmp_path / "out", child="kim")
    finally:
        home.stop()
    heard = " ".join(r.heard.lower() for r in result.records)
    for word in ("green", "spider", "night"):
        assert word in heard, heard
    assert all(r.reply for r in result.records)
    assert remote.link.served >= 1 and remote.link.failures >= 1
    assert "[REMOTE_ASR_FAILED]" in caplog.text
