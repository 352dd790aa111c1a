"""How long to wait after the child stops: two votes, the sound (the turn model) and the words (the transcript).

======================  =================================  ================
model says              transcript says                    silence waited
======================  =================================  ================
finished                not heard yet                      ``unsure_ms`` (until the words vote)
finished                finished, or no opinion            ``complete_ms``
finished                unfinished                         ``unsure_ms``
mid-sentence            finished, the language model sure  ``sure_ms``
mid-sentence            finished                           ``unsure_ms``
mid-sentence            unfinished, or no opinion          ``incomplete_ms``
no answer (off/failed)  ends with . ! ?                    the silence rule: ``[vad] end_silence_ms``
no answer (off/failed)  anything else                      ``[voice] unfinished_hold_ms``
======================  =================================  ================

The transcript's vote (voice/turn_end.py ``text_vote``): unfinished when it ends on a word that needs
more ("and", "the") or a comma, finished when it ends with . ! ?; for bare words of four or more the
language model's (``probe_vote``: "my favourite food is" goes on, "why is the sky blue" is asked), no
opinion for shorter bare words (Whisper writes "a dog" for a finished short answer too). The language
model is "sure" from ``words_sure_threshold``: Smart Turn hears many finished sentences of the generated
voices as mid-sentence, and the words then settle it sooner.

The model answers ~100-800 ms into the pause, the words ~300-1,000 ms (the speculative ASR, then the
language model's look at them). A "finished" from the model alone does not end the turn while the words
are coming: they are known before any reply is ready to play, so waiting for them costs the child no
time, and ending without them cut in on "and so my fellow Americans," + a breath. Children pause long
mid-sentence and finish short answers with no pause at all: neither silence nor words alone can tell
those apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from companion.turn.config import TurnConfig


@dataclass(frozen=True)
class TurnWait:
    wait_ms: int
    #: "model+text", "model", "text" or "silence" (the silence rule: no model).
    by: str


def decide(config: TurnConfig | None, probability: float | None, text_unfinished: bool | None, *,
           words_pending: bool = False, words_sure: bool = False, looks_unfinished: bool = False, silence_ms: int,
           unfinished_hold_ms: int) -> TurnWait:
    """The silence (ms after the end of speech) that ends this turn, from the votes known so far.

    ``text_unfinished``: the transcript's vote (None: no opinion, or not heard yet); ``words_pending``:
    it is not heard yet and is coming (the speculative turn's transcript); ``words_sure``: the language
    model reads the words as finished with at least ``words_sure_threshold``. ``config`` None or
    ``probability`` None (no model, or it failed): the silence rule, which holds any transcript that
    ``looks_unfinished`` (bare words included)."""
    if config is None or probability is None:
        by = "silence" if config is None else "text"
        if looks_unfinished:
            return TurnWait(max(silence_ms, unfinished_hold_ms), by)
        return TurnWait(silence_ms, by)
    model_done = probability >= config.threshold
    if text_unfinished is None:
        if model_done and words_pending:
            return TurnWait(config.unsure_ms, "model")
        return TurnWait(config.complete_ms if model_done else config.incomplete_ms, "model")
    text_done = not text_unfinished
    if model_done and text_done:
        wait = config.complete_ms
    elif text_done and words_sure:
        wait = config.sure_ms
    elif model_done or text_done:
        wait = config.unsure_ms
    else:
        wait = config.incomplete_ms
    return TurnWait(wait, "model+text")
