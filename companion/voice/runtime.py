"""Loading the voice pipeline's models once, warmed up, from the model cache."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from companion.asr.whisper import WhisperASR
from companion.audio.sinks import Player
from companion.brain.conversation import Conversation, load_generator, persona_of
from companion.memory.store import MemoryStore
from companion.memory.worker import MemoryWorker
from companion.config import CompanionConfig
from companion.llm.generate import Generator
from companion.brain.understanding import load_understanding
from companion.knowledge.index import Knowledge
from companion.safety.classifier import SafetyClassifier
from companion.models.cache import ModelCache
from companion.paths import models_cache_dir
from companion.tts.piper_voice import PiperTTS
from companion.errors import ModelError
from companion.speaker.encoder import FusedEncoder, SpeakerEncoder, open_speaker_encoder
from companion.speaker.enrol import consented_voiceprints
from companion.speaker import listening
from companion.speaker.household import Household, VoiceState
from companion.turn.model import SmartTurn, load_turn_model
from companion.vad.endpoint import Endpointer
from companion.vad.silero import SileroVAD
from companion.voice.loop import VoiceLoop
from companion.wyoming.remote import RemoteASR, RemoteBrain, RemoteTTS, with_remote

log = logging.getLogger(__name__)


@dataclass
class VoiceModels:
    #: The robot's own model, or a family server's brain with it behind (``[remote] handle``).
    generator: Generator | RemoteBrain
    #: The robot's own ASR and TTS, or a Wyoming server's with them behind (``[remote]``).
    asr: WhisperASR | RemoteASR
    tts: PiperTTS | RemoteTTS
    vad_path: Path
    load_s: float
    #: The fact cards and the sentence encoder (None: grounding off in the config).
    knowledge: Knowledge | None = None
    #: The safety layer's classifier by meaning (None: off in the config, or no encoder).
    classifier: SafetyClassifier | None = None
    #: The end-of-turn model (None: off in the config, or not prepared: turns end by the silence rule).
    turn: SmartTurn | None = None
    #: The speaker encoder (None: off in the config, or not prepared: every turn is the default child's).
    speaker: SpeakerEncoder | FusedEncoder | None = None

    def close(self) -> None:
        self.generator.close()
        self.asr.close()
        self.tts.close()
        for model in (self.turn, self.speaker):
            if model is not None:
                model.close()


def load_voice_models(config: CompanionConfig, cache: ModelCache | None = None) -> VoiceModels:
    """Every model the loop needs, loaded and run once so the first turn is not slower than the rest."""
    cache = cache or ModelCache(models_cache_dir())
    started = time.perf_counter()
    vad_path = cache.get(config.vad.model).path / "silero_vad_v6.onnx"
    asr = WhisperASR(cache.get(config.asr.model).path, config.asr)
    tts = PiperTTS(cache.get(persona_of(config).voice).path)
    generator = load_generator(config, cache)
    understanding = load_understanding(config, cache)
    knowledge = understanding.knowledge
    asr.warm()
    tts.warm()
    # A stage the config hands to a Wyoming server in the house, with the robot's own model behind it.
    asr, tts, generator = with_remote(asr, tts, generator, config.remote)
    if knowledge is not None:
        knowledge.find("warm up")
    if understanding.safety is not None:
        understanding.safety.classify_input("warm up")
    turn = _turn_model(config, cache)
    speaker = _speaker_model(config, cache)
    load_s = time.perf_counter() - started
    log.info("voice models loaded and warm in %.1f s", load_s)
    return VoiceModels(generator, asr, tts, vad_path, load_s, knowledge, understanding.safety, turn, speaker)


def _speaker_model(config: CompanionConfig, cache: ModelCache) -> SpeakerEncoder | FusedEncoder | None:
    """The speaker encoder, or None (off, or not prepared: a warning, since enrolled children would then
    all be taken for the default child)."""
    if not config.speakers.enabled:
        return None
    missing = [name for name in config.speakers.models if cache.record(name) is None]
    if missing:
        log.warning("[SPEAKER_MODEL_MISSING] the speaker encoder %s is not prepared: children are not told apart "
                    "by voice (run `companion models prepare %s`)", missing[0], " ".join(missing))
        return None
    try:
        encoder = open_speaker_encoder(cache, config.speakers.models, threads=config.speakers.threads,
                                       nice=config.speakers.nice)
        encoder.warm()
    except ModelError as err:
        log.warning("[SPEAKER_MODEL_MISSING] %s: children are not told apart by voice", err.message)
        return None
    return encoder


def _turn_model(config: CompanionConfig, cache: ModelCache) -> SmartTurn | None:
    """The end-of-turn model, or None (off, not prepared, or no tentative end to run it at)."""
    if not config.turn.enabled:
        return None
    if config.vad.early_end_ms <= 0:
        log.warning("[TURN_MODEL_UNUSED] the end-of-turn model runs at the tentative end of speech, which "
                    "[vad] early_end_ms = 0 turns off; turns end by the silence rule")
        return None
    path = cache.path(config.turn.model)
    return load_turn_model(path if cache.record(config.turn.model) is not None else None, threads=config.turn.threads,
                           nice=config.turn.nice)


def new_loop(models: VoiceModels, config: CompanionConfig, child: str, player: Player,
             on_event=None, memory: MemoryStore | MemoryWorker | None = None) -> tuple[VoiceLoop, Conversation]:
    """A fresh loop (fresh VAD state, the child's conversation and memory) over already loaded models.

    Returns the loop and the child's session; the caller closes the session when the loop ends."""
    endpointer = Endpointer(SileroVAD(models.vad_path), config.vad)
    household = None
    if models.speaker is not None and memory is not None:
        household = _household(models, config, child, memory)
        brain = household.current
    else:
        brain = Conversation(models.generator, config, child, memory, models.knowledge, models.classifier)
    loop = VoiceLoop(endpointer=endpointer, asr=models.asr, brain=brain, model=models.generator,
                     sampling=config.llm.sampling(), tts=models.tts, player=player, config=config.voice,
                     on_event=on_event, turn_model=models.turn, turn_config=config.turn, speakers=household)
    return loop, household or brain


def _household(models: VoiceModels, config: CompanionConfig, child: str,
               memory: MemoryStore | MemoryWorker) -> Household:
    """One conversation per child recognised by voice, all on one memory worker."""
    own = isinstance(memory, MemoryStore)
    worker = MemoryWorker(memory) if own else memory
    model = models.speaker.name

    def open_brain(name: str, guest: bool) -> Conversation:
        return Conversation(models.generator, config, name, worker, models.knowledge, models.classifier, guest=guest)

    async def read_state() -> VoiceState:
        return await worker.call(_voice_state, model)

    async def learnt(name: str, vectors: list, speech_s: float) -> None:
        await worker.call(listening.finish, name, model, vectors, speech_s)

    async def abandoned() -> None:
        await worker.call(listening.clear)

    return Household(models.speaker, read_state, config.speakers, open_brain, open_brain(child, False),
                     on_close=worker.close if own else None, learnt=learnt, abandoned=abandoned)


def _voice_state(store: MemoryStore, model: str) -> VoiceState:
    """Runs on the memory worker: the voiceprints (with consent) and any enrolment by talking."""
    return VoiceState(consented_voiceprints(store, model), listening.pending(store))


