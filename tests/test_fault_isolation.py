"""An exception inside one turn: the robot says a short kind line and goes back to listening."""

from __future__ import annotations

import asyncio

import numpy as np

from companion.audio.sinks import SimulatedSpeaker
from companion.chat import Conversation
from companion.config import CompanionConfig
from companion.llm.generate import Generator
from companion.vad.endpoint import Utterance
from companion.voice.events import LoopState, TurnFailed
from companion.voice.loop import OOPS, VoiceLoop
from tests.test_safety import _FakeASR, _RecordingTTS


class _BrokenConversation(Conversation):
    async def stream(self, heard, gate=None):
        self.verdict = self.safety.check_input(heard)
        raise RuntimeError("the model fell over")
        yield  # pragma: no cover - makes this an async generator


def test_a_failing_turn_says_oops_and_the_loop_goes_on(tiny_model_dir):
    generator = Generator(tiny_model_dir)
    tts = _RecordingTTS()
    events = []

    async def scenario():
        player = SimulatedSpeaker(22050)
        loop = VoiceLoop(endpointer=type("E", (), {"in_speech": False})(), asr=_FakeASR(), tts=tts, player=player,
                         on_event=events.append,
                         conversation=_BrokenConversation(generator, CompanionConfig(), "kid"))
        utt = Utterance(np.zeros(16000, np.float32), 0.0, 0.1, 0.9)
        for _ in range(2):  # twice: the first failure leaves the loop able to take the next turn
            loop._turn = asyncio.get_running_loop().create_task(loop._run_turn(utt))
            await loop._turn
        await player.close()
        return loop

    loop = asyncio.run(scenario())
    generator.close()
    failures = [e for e in events if isinstance(e, TurnFailed)]
    assert len(failures) == 2 and failures[0].code == "TURN_FAILED"
    assert tts.texts == [OOPS, OOPS]
    assert loop.state == LoopState.LISTENING and loop._turn is None
