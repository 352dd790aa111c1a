"""Who is talking: features, the decision, voiceprint storage and erasure, and the loop's use of it
(fake encoder on tones here; the real encoder and voices in test_speaker_real.py)."""

from __future__ import annotations

import asyncio
import sqlite3

import numpy as np
import pytest

from companion.errors import CompanionError
from companion.memory.store import DB_NAME, MemoryStore
from companion.parent import settings as parent_settings
from companion.speaker.config import SpeakerConfig
from companion.speaker.encoder import DVECTOR, GE2E
from companion.speaker.enrol import SPEAKER_CONSENT_MISSING, consented_voiceprints, enrol
from companion.speaker.features import mel_frames, windows
from companion.speaker.household import Household, VoiceState
from companion.speaker.identify import BY_KEPT, BY_VOICE, GUEST, identify, voiceprint
from companion.voice.events import TurnCompleted
from companion.voice.simulate import Segment
from companion.voice.testing import ScriptedBrain, ToneEncoder, run_test, tone


def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# -- features ------------------------------------------------------------------------------------

def test_mel_frames_follow_each_encoders_framing():
    audio = (0.1 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)).astype(np.float32)
    ge2e, dvec = mel_frames(audio, GE2E), mel_frames(audio, DVECTOR)
    assert ge2e.shape == (101, 40)  # centred frames: 1 + 16000 // 160
    assert dvec.shape == (1 + (16_000 - 512) // 160, 40)
    assert (ge2e >= 0).all() and dvec.max() < 5  # power mel vs log10 mel
    # 440 Hz lands in one band: the loudest band is the same for both framings.
    assert int(np.argmax(ge2e.mean(axis=0))) == int(np.argmax(dvec.mean(axis=0)))


def test_windows_cover_the_end_and_a_short_utterance_fills_one_window():
    frames = np.arange(300 * 40, dtype=np.float32).reshape(300, 40)
    w = windows(frames, GE2E)
    assert w.shape[1:] == (160, 40) and (w[-1][-1] == frames[-1]).all()
    short = windows(frames[:50], GE2E)
    assert short.shape == (1, 160, 40) and (short[0][50] == frames[0]).all()  # repeated, not zero-padded
    with pytest.raises(ValueError):
        windows(frames[:0], GE2E)


# -- the decision ---------------------------------------------------------------------------------

PRINTS = {"ana": _unit(1, 0, 0), "ben": _unit(0, 1, 0)}


def test_identify_picks_the_closest_voiceprint_above_the_threshold_else_a_guest():
    kw = dict(threshold=0.8, speech_s=2.0, min_speech_s=1.0, last=None, keep_threshold=0.75, keep_margin=0.0)
    ana = identify(_unit(1, 0.2, 0), PRINTS, **kw)
    assert (ana.child, ana.by) == ("ana", BY_VOICE) and ana.score > 0.95
    stranger = identify(_unit(0.5, 0.5, 1), PRINTS, **kw)
    assert stranger.child is None and stranger.by == GUEST and stranger.closest in PRINTS
    assert identify(_unit(1, 0, 0), {}, **kw).child is None


def test_a_short_utterance_keeps_the_last_speaker_unless_the_voice_says_otherwise():
    kw = dict(threshold=0.9, speech_s=0.4, min_speech_s=1.0, keep_threshold=0.75, keep_margin=0.0)
    kept = identify(_unit(1, 0.3, 0.3), PRINTS, last="ana", **kw)  # 0.92 to ana: "yes", as ana sounds
    assert (kept.child, kept.by) == ("ana", BY_KEPT)
    vague = identify(_unit(1, 0.6, 0.5), PRINTS, last="ana", **kw)  # 0.78 to ana, closest to ana: still hers
    assert (vague.child, vague.by) == ("ana", BY_KEPT) and vague.score < 0.9
    # Closer to ben than to ana: not ana's, and too weak (0.88) to be ben's: a guest. A sibling's short
    # "what is my pet called?" is never answered from the child before's memory.
    other = identify(_unit(0.5, 1, 0), PRINTS, last="ana", **kw)
    assert other.child is None and other.closest == "ben"
    strong = identify(_unit(0.1, 1, 0), PRINTS, last="ana", **kw)  # short but unmistakably ben
    assert (strong.child, strong.by) == ("ben", BY_VOICE)
    assert identify(_unit(1, 0.3, 0.3), PRINTS, last=None, **kw).child == "ana"  # 0.92 >= 0.9 on its own
    assert identify(_unit(1, 0.6, 0.5), PRINTS, last=None, **kw).child is None  # nobody before: a guest


def test_a_voiceprint_is_the_normalised_mean():
    vp = voiceprint([_unit(1, 0, 0), _unit(0, 1, 0)])
    assert np.allclose(vp, _unit(1, 1, 0))
    with pytest.raises(ValueError):
        voiceprint([])


def test_speaker_config_is_checked():
    for bad in (dict(threshold=1.2), dict(min_speech_s=-1), dict(threads=0), dict(nice=30), dict(models=()),
                dict(keep_threshold=0.95, threshold=0.9), dict(keep_margin=-0.1)):
        with pytest.raises(ValueError):
            SpeakerConfig(**bad)


# -- storage, consent, erasure --------------------------------------------------------------------

def _db_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith(DB_NAME))


def _consent(store: MemoryStore, on: bool = True) -> None:
    from dataclasses import replace

    parent_settings.save(store, replace(parent_settings.load(store), voice_id=on))


def test_voiceprints_need_consent_and_withdrawing_it_erases_them(tmp_path):
    store = MemoryStore(tmp_path)
    vec = np.random.default_rng(1).standard_normal(256).astype(np.float32)
    with pytest.raises(CompanionError) as err:
        enrol(store, None, "ana", [np.zeros(16_000, np.float32)])
    assert err.value.code == SPEAKER_CONSENT_MISSING
    _consent(store)
    store.put_voiceprint("ana", "speaker-ge2e", vec, utterances=3, speech_s=21.0)
    assert np.array_equal(consented_voiceprints(store, "speaker-ge2e")["ana"], vec)
    assert consented_voiceprints(store, "speaker-dvector") == {}  # another encoder's vectors don't compare
    assert store.voiceprint_info()[0]["speech_s"] == 21.0
    _consent(store, False)
    assert store.voiceprints("speaker-ge2e") == {} and consented_voiceprints(store, "speaker-ge2e") == {}
    assert vec.tobytes() not in _db_bytes(tmp_path)
    store.close()


def test_memory_erase_leaves_no_byte_of_the_voiceprint_on_disk(tmp_path):
    store = MemoryStore(tmp_path)
    _consent(store)
    rng = np.random.default_rng(7)
    ana, ben = (rng.standard_normal(256).astype(np.float32) for _ in range(2))
    store.put_voiceprint("ana", "speaker-ge2e", ana, utterances=2, speech_s=20.0)
    store.put_voiceprint("ben", "speaker-ge2e", ben, utterances=2, speech_s=20.0)
    store.add_turn(store.start_session("ana"), "ana", "I have a dog", "Lovely!")
    assert ana.tobytes() in _db_bytes(tmp_path)
    assert "voiceprint" not in store.export_child("ana")  # biometric data is exported only when asked
    assert store.export_child("ana", voiceprint=True)["voiceprint"]["utterances"] == 2
    assert store.erase_child("ana")
    data = _db_bytes(tmp_path)
    assert ana.tobytes() not in data and ana[:8].tobytes() not in data
    assert ben.tobytes() in data  # the sibling's stays
    # Replacing a voiceprint (re-enrolment) leaves no trace of the old one either.
    store.put_voiceprint("ben", "speaker-ge2e", ana, utterances=1, speech_s=9.0)
    assert ben[:8].tobytes() not in _db_bytes(tmp_path)
    store.erase_all()
    assert ana[:8].tobytes() not in _db_bytes(tmp_path)
    store.close()


def test_a_database_from_before_voiceprints_is_migrated(tmp_path):
    from companion.memory.store import MIGRATIONS

    db = sqlite3.connect(tmp_path / DB_NAME)  # as a robot of the previous release left it: schema 2
    for version in (1, 2):
        for statement in MIGRATIONS[version]:
            db.execute(statement)
    db.execute("INSERT INTO children(name, created_at) VALUES ('ana', 0)")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = MemoryStore(tmp_path)
    assert store.schema_version == 3 and store.children() == ["ana"] and store.voiceprint_info() == []
    store.put_voiceprint("ana", "speaker-ge2e", np.ones(256, np.float32) / 16, utterances=1, speech_s=10.0)
    assert store.voiceprint_info()[0]["child"] == "ana"
    store.close()


# -- the loop ------------------------------------------------------------------------------------

LINES = {300.0: "I have a dog called Rex.", 700.0: "What is my dog called?", 1100.0: "Hello there robot!",
         330.0: "Yes"}


def _household(encoder: ToneEncoder, prints: dict, min_speech_s: float = 1.0):
    brains: dict[str, ScriptedBrain] = {}

    def open_brain(name: str, guest: bool) -> ScriptedBrain:
        brains[name] = ScriptedBrain(child=name)
        brains[name].guest = guest
        return brains[name]

    async def read_prints():
        return VoiceState(prints)

    first = open_brain("child", False)
    config = SpeakerConfig(threshold=0.8, min_speech_s=min_speech_s, keep_threshold=0.5)
    return Household(encoder, read_prints, config, open_brain, first), brains


def _turns(run) -> list[dict]:
    return [e.record.to_json() for e in run.events if isinstance(e, TurnCompleted)]


def test_each_turn_goes_to_the_speakers_own_conversation():
    encoder = ToneEncoder()
    household, brains = _household(encoder, {"ana": encoder.vector(300), "ben": encoder.vector(700)})
    segments = [Segment(tone(300, 1.5)), Segment(tone(700, 1.5)), Segment(tone(1100, 1.5)), Segment(tone(300, 1.5))]
    run = run_test(segments, lines=LINES, speakers=household)
    turns = _turns(run)
    assert [t["child"] for t in turns] == ["ana", "ben", "guest", "ana"]
    assert [t["speaker"]["by"] for t in turns] == ["voice", "voice", "guest", "voice"]
    assert turns[0]["speaker"]["score"] > 0.99 and turns[2]["speaker"]["score"] < 0.8
    # Each conversation remembered only its own speaker's words; the guest's is a guest conversation.
    assert [s.plan.heard for s in brains["ana"].remembered] == [LINES[300.0]] * 2
    assert [s.plan.heard for s in brains["ben"].remembered] == [LINES[700.0]]
    assert brains["guest"].guest and not brains["ana"].guest
    assert brains["child"].remembered == []
    # The encoder ran beside the ASR: its answer was there before the transcript's.
    for t in turns:
        assert t["timings"]["trace"]["speaker_end"] <= t["timings"]["trace"]["asr_end"]
    asyncio.run(household.close())
    assert all(b.closed for b in brains.values())


def test_a_short_yes_stays_with_the_child_who_was_talking_but_not_a_siblings():
    encoder = ToneEncoder()
    household, _ = _household(encoder, {"ana": encoder.vector(300), "ben": encoder.vector(700)})
    # A short 330 Hz "yes" is 0.78 like ana (under the 0.8 threshold): kept as ana's after ana spoke...
    run = run_test([Segment(tone(300, 1.5)), Segment(tone(330, 0.5))], lines=LINES, speakers=household)
    turns = _turns(run)
    assert [t["child"] for t in turns] == ["ana", "ana"] and turns[1]["speaker"]["by"] == "kept"
    # ...but after ben, it is not ben's (nothing like him), and too unsure to be ana's: a guest's.
    household, _ = _household(encoder, {"ana": encoder.vector(300), "ben": encoder.vector(700)})
    run = run_test([Segment(tone(700, 1.5)), Segment(tone(330, 0.5))], lines=LINES, speakers=household)
    assert [t["child"] for t in _turns(run)] == ["ben", "guest"]


def test_with_nobody_enrolled_every_turn_is_the_default_childs_and_nothing_is_embedded():
    encoder = ToneEncoder()
    household, brains = _household(encoder, {})
    run = run_test([Segment(tone(300, 1.5)), Segment(tone(700, 1.5))], lines=LINES, speakers=household)
    assert [t["child"] for t in _turns(run)] == ["child", "child"]
    assert encoder.calls == 0 and all(t["speaker"] is None for t in _turns(run))
    assert len(brains["child"].remembered) == 2


def test_a_failing_encoder_makes_the_turn_a_guests_not_a_failure(caplog):
    encoder = ToneEncoder(fail=True)
    household, brains = _household(encoder, {"ana": encoder.vector(300)})
    run = run_test([Segment(tone(300, 1.5))], lines=LINES, speakers=household)
    turns = _turns(run)
    assert turns[0]["child"] == "guest" and turns[0]["speaker"]["by"] == "failed" and turns[0]["reply"]
    assert "SPEAKER_ID_FAILED" in caplog.text and "ana" not in brains  # no child's conversation was opened


# -- enrolment by talking ----------------------------------------------------------------------

def test_the_robot_learns_a_voice_by_talking_and_then_knows_it():
    from companion.speaker import listening

    encoder = ToneEncoder()
    state = {"prints": {}, "enrolling": "ana"}
    learnt = []
    brains: dict[str, ScriptedBrain] = {}

    def open_brain(name: str, guest: bool) -> ScriptedBrain:
        brains[name] = ScriptedBrain(child=name)
        return brains[name]

    async def read_state():
        return VoiceState(dict(state["prints"]), state["enrolling"])

    async def on_learnt(child, vectors, speech_s):
        learnt.append((child, len(vectors), speech_s))
        from companion.speaker.identify import voiceprint

        state["prints"], state["enrolling"] = {child: voiceprint(vectors)}, None

    household = Household(encoder, read_state, SpeakerConfig(threshold=0.8, min_speech_s=1.0), open_brain,
                          open_brain("child", False),
                          learnt=on_learnt, abandoned=None)
    # 1.5 s turns: 8 of them (MAX_TURNS) give 12 s, over the 8 s minimum: learnt at the 8th; then ana by voice.
    segments = [Segment(tone(300, 1.5)) for _ in range(listening.MAX_TURNS + 1)]
    run = run_test(segments, lines=LINES, speakers=household)
    turns = _turns(run)
    assert [t["child"] for t in turns] == ["ana"] * (listening.MAX_TURNS + 1)
    assert turns[0]["reply"].startswith("Hi Ana! Your grown-up asked me to learn your voice")
    assert turns[1]["reply"] == listening.PROMPTS[0] and "Now I know your voice" in turns[7]["reply"]
    assert [t["speaker"]["by"] for t in turns] == ["enrolling"] * listening.MAX_TURNS + ["voice"]
    assert learnt == [("ana", listening.MAX_TURNS, pytest.approx(listening.MAX_TURNS * 1.5, abs=0.5))]
    # The child's words went through the child's own conversation (transcript, safety); the ninth turn is a
    # normal one, answered by the model.
    assert len(brains["ana"].remembered) == listening.MAX_TURNS + 1
    assert turns[8]["reply"] != turns[7]["reply"] and "vector" not in turns[0]["speaker"]


def test_a_request_to_learn_a_voice_needs_consent_and_lapses(tmp_path):
    from companion.speaker import listening

    store = MemoryStore(tmp_path)
    store.add_turn(store.start_session("ana"), "ana", "hi", "hello")
    with pytest.raises(CompanionError):
        listening.request(store, "ana")
    _consent(store)
    until = listening.request(store, "ana", now=1000.0)
    assert listening.pending(store, now=1000.0 + 60) == "ana"
    assert listening.pending(store, now=until + 1) is None  # lapsed: no one is enrolled later by mistake
    _consent(store, False)
    assert listening.pending(store, now=1000.0 + 60) is None
    _consent(store)
    listening.finish(store, "ana", "m", [_unit(1, 0, 0), _unit(1, 0.1, 0)], 21.0)
    assert listening.pending(store, now=1000.0 + 60) is None and store.voiceprints("m")["ana"].shape == (3,)
    assert [f.value for f in store.facts("ana") if f.kind == "name"] == ["ana"]
    listening.request(store, "ana", now=1000.0)
    store.erase_child("ana")
    assert listening.pending(store, now=1000.0 + 60) is None  # an erased child is not enrolled
    store.close()


def test_a_parent_asks_the_robot_to_learn_a_voice_from_the_dashboard(tmp_path):
    from companion.speaker import listening
    from tests.test_parent import logged_in_dashboard

    store = MemoryStore(tmp_path)
    client, csrf = logged_in_dashboard(store)
    refused = client.post("/children/mia/voice/listen", data={"csrf": csrf})
    assert refused.status_code == 400 and "consent" in refused.text and listening.pending(store) is None
    client.post("/settings", data={"csrf": csrf, "voice_id": "on", "volume": "100"})
    asked = client.post("/children/mia/voice/listen", data={"csrf": csrf})
    assert asked.status_code == 200 and "say hello to the robot" in asked.text
    assert listening.pending(store) == "mia" and 'id="voice_listening"' in client.get("/children/mia/memory").text
    client.post("/settings", data={"csrf": csrf, "volume": "100"})  # consent withdrawn: the request is void too
    assert listening.pending(store) is None
    store.close()


def test_the_equal_error_rate_is_where_misses_and_false_accepts_cross():
    from companion.eval.speakers import _eer

    rng = np.random.default_rng(0)
    target, nontarget = rng.normal(0.9, 0.03, 400), rng.normal(0.7, 0.08, 3000)
    eer, at = _eer(list(target), list(nontarget))
    # The brute-force definition, threshold by threshold.
    best = min(np.unique(np.concatenate([target, nontarget])),
               key=lambda th: abs(np.mean(target < th) - np.mean(nontarget >= th)))
    assert at == pytest.approx(best, abs=1e-4)
    assert eer == pytest.approx((np.mean(target < best) + np.mean(nontarget >= best)) / 2, abs=1e-4)
    assert _eer([0.9, 0.95], [0.1, 0.2]) == (0.0, 0.9)  # apart: no error at the lowest target score
