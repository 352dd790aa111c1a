"""Did the child finish? A transcript that stops mid-phrase makes the robot wait longer before speaking.

Silence alone cannot tell "Why is the sky blue?" from "And so my fellow..." + a breath. Whisper
ends a finished sentence with punctuation and usually leaves a cut-off phrase bare; a phrase
that ends on a word that needs a continuation ("and", "the", "because") is unfinished whatever
its punctuation. Such a turn is answered only after ``LoopConfig.unfinished_hold_ms`` of silence;
if the child goes on meanwhile, it becomes part of the same utterance (the loop's carry-over).
"""

from __future__ import annotations

import re

#: Words after which a sentence goes on.
CONTINUES = frozenset({
    "and", "but", "or", "so", "because", "cause", "if", "when", "then", "that", "which", "who",
    "the", "a", "an", "my", "your", "his", "her", "our", "their", "its", "this", "these", "those",
    "to", "of", "in", "on", "at", "with", "from", "like", "into", "um", "uh", "erm", "i",
})  # not "you", "for", "is": "thank you", "what is it for", "here it is" are finished

_END = re.compile(r"[.!?…][\"')\]]*$")
_GOES_ON = re.compile(r"([,;:\-–—]|\.\.\.|…)[\"')\]]*$")


def looks_unfinished(text: str) -> bool:
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return False
    if words[-1] in CONTINUES or _GOES_ON.search(text.strip()):  # "my favourite food is..." trails off
        return True
    return not _END.search(text.strip())


def text_vote(text: str) -> bool | None:
    """The transcript's vote beside the end-of-turn model: True (unfinished: it ends on a word that needs
    more, on a comma, or trails off: Whisper's "..."), False (finished: it ends with . ! ?), None (no opinion: bare words, which
    Whisper also writes for a finished short answer, "a dog")."""
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return None
    if words[-1] in CONTINUES or _GOES_ON.search(text.strip()):
        return True
    if _END.search(text.strip()):
        return False
    return None
