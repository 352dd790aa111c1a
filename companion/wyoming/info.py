"""``info``: the programs ``companion wyoming`` serves, described from the prepared models' manifests.

Truthful by construction: a stage the server was not started with is not listed, names are the
models actually loaded, ASR streaming is not claimed (the transcript comes once the audio has
ended), TTS and handle stream (by sentence, by checked piece of the reply), and the brain never
controls a home.
"""

from __future__ import annotations

from wyoming.info import (AsrModel, AsrProgram, Attribution, HandleModel, HandleProgram, Info, TtsProgram,
                          TtsVoice)

from companion import __version__
from companion.models.manifest import ModelManifest

#: Program names (``select-program`` picks them; they are unique per domain).
ASR_PROGRAM, TTS_PROGRAM, HANDLE_PROGRAM = "companion-asr", "companion-tts", "companion-brain"

_COMPANION = Attribution(name="companion", url="")
_WHISPER = Attribution(name="OpenAI Whisper, via faster-whisper (SYSTRAN)",
                       url="https://github.com/SYSTRAN/faster-whisper")
_PIPER = Attribution(name="Piper (Open Home Foundation)", url="https://github.com/OHF-Voice/piper1-gpl")


def _model_url(manifest: ModelManifest) -> str:
    return f"https://huggingface.co/{manifest.hf_id}" if manifest.hf_id else ""


def build_info(*, asr: ModelManifest | None, asr_languages: list[str], tts: ModelManifest | None,
               tts_language: str | None, llm: ModelManifest | None, persona: str | None) -> Info:
    """The ``info`` event's content for the stages served (None: not served)."""
    info = Info()
    if asr is not None:
        info.asr.append(AsrProgram(
            name=ASR_PROGRAM, attribution=_COMPANION, installed=True, version=__version__,
            description="faster-whisper with companion's transcript guard (empty, no-speech and hallucinated "
                        "transcripts are dropped)",
            models=[AsrModel(name=asr.name, attribution=_WHISPER, installed=True, description=asr.description,
                             version=None, languages=asr_languages)],
            supports_transcript_streaming=False))
    if tts is not None:
        info.tts.append(TtsProgram(
            name=TTS_PROGRAM, attribution=_COMPANION, installed=True, version=__version__,
            description="piper, one sentence at a time while the text streams in",
            voices=[TtsVoice(name=tts.name, attribution=_PIPER, installed=True, description=tts.description,
                             version=None, languages=[tts_language] if tts_language else [])],
            supports_synthesize_streaming=True))
    if llm is not None:
        info.handle.append(HandleProgram(
            name=HANDLE_PROGRAM, attribution=_COMPANION, installed=True, version=__version__,
            description=f"companion's child-safe brain as {persona}: input safety, the child's memory, the persona, "
                        f"the language model, the output guard. Context 'child' names the child.",
            models=[HandleModel(name=llm.name, attribution=Attribution(name=llm.description, url=_model_url(llm)),
                                installed=True, description=llm.description, version=None, languages=["en"])],
            supports_handled_streaming=True, supports_home_control=False))
    return info
