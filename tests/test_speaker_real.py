"""Who is talking, with the real speaker encoder and real voices: two children enrolled by voice keep two
memories through ``companion simulate``; the dashboard enrols from an upload; the test set's figures."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from companion.audio.files import write_wav
from companion.eval.speakers import ENROL_LINES
from companion.memory.store import MemoryStore
from tests.conftest import RECORDINGS

voices = pytest.importorskip("companion.bench.voices")
if not voices.espeak_available():
    pytest.skip("espeak-ng (espeakng-loader, the test extra) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def piper(real_cache):
    from companion.tts.piper_voice import PiperTTS

    tts = PiperTTS(real_cache.path("piper-en-us-joe-medium"))
    yield tts
    tts.close()


@pytest.fixture(scope="module")
def encoder(real_cache):
    """The configured encoders, fused (GE2E and the d-vector)."""
    from companion.config import CompanionConfig
    from companion.speaker.encoder import open_speaker_encoder

    enc = open_speaker_encoder(real_cache, CompanionConfig().speakers.models)
    yield enc
    enc.close()


#: The second child: an espeak-ng voice of the test pool (sped up, Whisper mishears it: "I am a cat, call, um").
BEN = voices.VOICE_POOL[1]


def _ana(piper, text: str) -> np.ndarray:
    speech = piper.synthesize_sync(text)
    return voices.to_16k(speech.samples, speech.rate)


def _ben(text: str) -> np.ndarray:
    audio, rate = voices.synthesize(text, BEN)
    return voices.to_16k(audio, rate)


def _companion(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "companion", *args], capture_output=True, text=True, timeout=timeout)


def test_fused_cosines_are_the_mean_of_each_encoders(encoder, piper):
    a, b = _ana(piper, ENROL_LINES[0]), _ben(ENROL_LINES[0])
    fused = float(encoder.embed(a).vector @ encoder.embed(b).vector)
    each = [float(e.embed(a).vector @ e.embed(b).vector) for e in encoder.encoders]
    assert len(each) == 2 and fused == pytest.approx(sum(each) / 2, abs=1e-5)
    assert encoder.dim == 512 and encoder.name == "speaker-ge2e+speaker-dvector"


def test_the_encoder_hears_the_same_voice_as_closer_than_another(encoder, piper):
    a1, a2 = (encoder.embed(_ana(piper, t)).vector for t in ENROL_LINES[:2])
    b1, b2 = (encoder.embed(_ben(t)).vector for t in ENROL_LINES[:2])
    same = min(float(a1 @ a2), float(b1 @ b2))
    other = max(float(a1 @ b1), float(a2 @ b2), float(a1 @ b2))
    assert same > 0.8 and other < same - 0.15, (same, other)
    from companion.audio.files import read_all

    jfk = read_all(RECORDINGS / "jfk.flac")
    halves = encoder.embed(jfk[:16000 * 5]).vector, encoder.embed(jfk[16000 * 5:]).vector
    assert float(halves[0] @ halves[1]) > float(halves[0] @ a1) + 0.15  # a real voice too


def test_two_children_enrolled_by_voice_keep_two_memories_through_simulate(real_cache, piper, tmp_path):
    data = tmp_path / "data"
    wavs = tmp_path / "wav"
    wavs.mkdir()
    for who, say in (("ana", lambda t: _ana(piper, t)), ("ben", _ben)):
        for i, line in enumerate(ENROL_LINES):
            write_wav(wavs / f"enrol-{who}-{i}.wav", say(line), 16_000)
    refused = _companion("children", "enroll", "ana", str(wavs / "enrol-ana-0.wav"), "--data-dir", str(data))
    assert refused.returncode != 0 and "SPEAKER_CONSENT_MISSING" in refused.stderr  # no consent, no voiceprint
    assert _companion("children", "consent", "on", "--data-dir", str(data)).returncode == 0
    for who in ("ana", "ben"):
        proc = _companion("children", "enroll", who, *sorted(str(p) for p in wavs.glob(f"enrol-{who}-*.wav")),
                          "--data-dir", str(data), "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["speech_s"] > 15
    # Whole sentences, as children say them (a turn under 1.5 s of speech is told by the voice only when it
    # does not contradict the child before: test_speaker.py), alternating.
    script = [("ana", "I have a dog called Rex and he likes to run in the garden."),
              ("ben", "I have a cat called Tom and she likes to chase a ball of string."),
              ("ana", "Do you remember what my pet is called? I told you before."),
              ("ben", "Do you remember what my pet is called? I told you before.")]
    files = []
    for i, (who, line) in enumerate(script):
        path = wavs / f"turn-{i}-{who}.wav"
        write_wav(path, _ana(piper, line) if who == "ana" else _ben(line), 16_000)
        files.append(str(path))
    out = tmp_path / "out"
    proc = _companion("simulate", *files, "--out", str(out), "--data-dir", str(data), "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in (out / "turns.jsonl").read_text().splitlines()]
    assert [t["child"] for t in turns] == ["ana", "ben", "ana", "ben"], [(t["heard"], t["speaker"]) for t in turns]
    assert all(t["speaker"]["by"] == "voice" and t["speaker"]["score"] >= 0.8 for t in turns)
    assert "rex" in turns[2]["reply"].lower()  # ana's own fact, recalled to ana
    assert "rex" not in turns[3]["reply"].lower() and "dog" not in turns[3]["reply"].lower()  # never to ben
    store = MemoryStore(data)
    try:
        ana_facts = " ".join(f.value for f in store.facts("ana"))
        ben_facts = " ".join(f.value for f in store.facts("ben"))
        assert "Rex" in ana_facts and "Rex" not in ben_facts and "cat" in ben_facts and "cat" not in ana_facts
        assert [f.value for f in store.facts("ana") if f.kind == "name"] == ["ana"]  # named at enrolment
        assert sum("remember" in t.heard.lower() for t in store.turns("ben")) == 1  # each child's own transcript
        assert sum("remember" in t.heard.lower() for t in store.turns("ana")) == 1
    finally:
        store.close()
    # Erase: ben's voiceprint goes with ben's memory, byte for byte; ana's stays.
    store = MemoryStore(data)
    ben_print = store.voiceprints("speaker-ge2e+speaker-dvector")["ben"].tobytes()
    store.close()
    assert _companion("memory", "erase", "--child", "ben", "--data-dir", str(data)).returncode == 0
    on_disk = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
    assert ben_print not in on_disk and ben_print[:16] not in on_disk
    listed = json.loads(_companion("children", "voices", "--json", "--data-dir", str(data)).stdout)
    assert [v["child"] for v in listed["voices"]] == ["ana"]


def test_a_parent_enrols_a_child_from_the_dashboard(real_cache, piper, tmp_path, monkeypatch):
    import io
    import wave

    from tests.test_parent import logged_in_dashboard

    store = MemoryStore(tmp_path)
    client, csrf = logged_in_dashboard(store)

    def phone_wav(audio: np.ndarray) -> bytes:
        """As a phone records: 44.1 kHz stereo (20 s of it is ~3.5 MB, past Starlette's 1 MB spooling limit)."""
        from companion.audio.files import resample

        pcm = (np.clip(resample(audio, 16_000, 44_100), -1, 1) * 32767).astype("<i2")
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(2), w.setsampwidth(2), w.setframerate(44_100)
            w.writeframes(np.repeat(pcm, 2).tobytes())
        return buf.getvalue()

    whole = np.concatenate([_ana(piper, line) for line in ENROL_LINES])
    files = [("audio", ("mia.wav", phone_wav(whole), "audio/wav"))]
    assert len(files[0][1][1]) > 2 * 2**20
    page = client.get("/children/mia/memory").text
    assert "Recognising children by voice is off" in page
    refused = client.post(f"/children/mia/voice/enrol?csrf={csrf}", files=files)
    assert refused.status_code == 400 and "consent" in refused.text
    client.post("/settings", data={"csrf": csrf, "voice_id": "on", "volume": "100"})
    assert client.post("/children/mia/voice/enrol", files=files).status_code == 403  # no CSRF token
    import tempfile

    created = []
    real_rollover = tempfile.SpooledTemporaryFile.rollover
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover",
                        lambda self: (created.append(1), real_rollover(self))[1])
    done = client.post(f"/children/mia/voice/enrol?csrf={csrf}", files=files)
    assert done.status_code == 200 and "Enrolled mia" in done.text, done.text
    assert store.voiceprint_info()[0]["child"] == "mia" and created == []  # the upload never went to disk
    assert "voice_enrolled" in client.get("/children/mia/memory").text
    bad = client.post(f"/children/mia/voice/enrol?csrf={csrf}",
                      files=[("audio", ("x.wav", b"RIFF0000WAVEjunk" * 40, "audio/wav"))])
    assert bad.status_code == 400 and re.search(r"AUDIO_FILE_CORRUPT|not a readable|corrupt", bad.text)
    client.post("/settings", data={"csrf": csrf, "volume": "100"})  # consent withdrawn: voiceprints erased
    assert store.voiceprint_info() == []
    store.close()


def test_the_speaker_test_set_meets_the_targets(real_cache, piper, encoder):
    from companion.config import CompanionConfig
    from companion.eval.speakers import evaluate

    config = CompanionConfig().speakers
    report = evaluate(encoder, piper, RECORDINGS, config, draws=20)  # the README figure's own run (seed 0)
    assert report["accuracy"] >= 0.95, report
    assert report["false_accept"] <= 0.02 and report["false_accept_real"] <= 0.02, report
    assert report["eer"] < 0.05
    first = report["confusion_first_draw"]
    assert sum(first["(not enrolled)"].values()) > 0 and len(first) == 5  # 4 children and the strangers


def test_the_robot_learns_a_childs_voice_by_talking(real_cache, piper, tmp_path):
    """The dashboard's "learn by talking": the robot chats with the child, then knows the voice."""
    from dataclasses import replace

    from companion.parent import settings as parent_settings
    from companion.speaker import listening

    data = tmp_path / "data"
    store = MemoryStore(data)
    parent_settings.save(store, replace(parent_settings.load(store), voice_id=True))
    store.add_turn(store.start_session("ana"), "ana", "hello", "hi!")
    listening.request(store, "ana")
    store.close()
    files = []
    after_lines = ("I have a rabbit called Snowy and she eats carrots.", "Do you know what my rabbit likes to eat?")
    for i, line in enumerate(("Hello robot!", *ENROL_LINES, *after_lines)):
        path = tmp_path / f"ana-{i}.wav"
        write_wav(path, _ana(piper, line), 16_000)
        files.append(str(path))
    out = tmp_path / "out"
    proc = _companion("simulate", *files, "--out", str(out), "--data-dir", str(data), "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in (out / "turns.jsonl").read_text().splitlines()]
    assert turns[0]["reply"].startswith("Hi Ana!") and all(t["child"] == "ana" for t in turns)
    done = [i for i, t in enumerate(turns) if "Now I know your voice" in t["reply"]]
    assert len(done) == 1 and all(t["speaker"]["by"] == "enrolling" for t in turns[:done[0] + 1])
    after = turns[done[0] + 1:]
    assert after and all(t["speaker"]["by"] == "voice" and t["speaker"]["score"] >= 0.88 for t in after)
    store = MemoryStore(data)
    try:
        info = store.voiceprint_info()
        assert [v["child"] for v in info] == ["ana"] and info[0]["speech_s"] >= 15
        assert listening.pending(store) is None
    finally:
        store.close()
