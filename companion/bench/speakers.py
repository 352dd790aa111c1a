"""``companion bench`` with voices recognised: two children enrolled, so the speaker encoder runs on every
turn as it does in a family's home, and its cost on first audio is in the figures.

"Bench" is enrolled from the bench's own TTS voice (the generated lines are said in it); a younger
sibling from the same sentences sped up by 1.3. The recordings' speakers are strangers (guests).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from companion.audio.files import resample
from companion.audio.frames import PIPELINE_RATE
from companion.bench.voices import speed_shift
from companion.eval.speakers import CHILD_SPEED, ENROL_LINES
from companion.memory.store import MemoryStore
from companion.parent import settings as parent_settings
from companion.speaker.identify import voiceprint


def enrol_bench_children(models, store: MemoryStore, child: str) -> list[str]:
    """Consent on, and voiceprints for ``child`` (the TTS voice) and a sibling; returns their names."""
    parent_settings.save(store, replace(parent_settings.load(store), voice_id=True))
    spoken = []
    for line in ENROL_LINES:
        speech = models.tts.synthesize_sync(line)
        spoken.append(resample(speech.samples, speech.rate, PIPELINE_RATE))
    names = []
    for name, audios in ((child, spoken), ("Sibling", [speed_shift(a, CHILD_SPEED) for a in spoken])):
        vectors = [models.speaker.embed(a) for a in audios]
        store.put_voiceprint(name, models.speaker.name, voiceprint([e.vector for e in vectors]),
                             utterances=len(vectors), speech_s=sum(e.speech_s for e in vectors))
        names.append(name)
    return names


def speaker_figures(records) -> dict | None:
    """Who the turns were taken for, and whether the encoder ever kept a turn waiting on it (its answer
    after the transcript's)."""
    guessed = [r for r in records if r.speaker is not None]
    if not guessed:
        return None
    late = [r.timings.trace["speaker_end"] - r.timings.trace["asr_end"] for r in guessed
            if r.timings.trace.get("speaker_end") is not None and r.timings.trace.get("asr_end") is not None]
    return {"turns": len(guessed), "by": dict(Counter(r.speaker["by"] for r in guessed)),
            "children": dict(Counter(r.child for r in guessed)),
            "after_asr_ms_max": round(max(late), 1) if late else None,
            "turns_waiting_on_it": sum(1 for x in late if x > 0)}
