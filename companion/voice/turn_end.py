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


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def looks_unfinished(text: str) -> bool:
    words = _words(text)
    if not words:
        return False
    if words[-1] in CONTINUES or _GOES_ON.search(text.strip()):  # "my favourite food is..." trails off
        return True
    return not _END.search(text.strip())


def text_vote(text: str) -> bool | None:
    """The transcript's vote beside the end-of-turn model: True (unfinished: it ends on a word that needs
    more, on a comma, or trails off: Whisper's "..."), False (finished: it ends with . ! ?), None (no opinion: bare words, which
    Whisper also writes for a finished short answer, "a dog")."""
    words = _words(text)
    if not words:
        return None
    if words[-1] in CONTINUES or _GOES_ON.search(text.strip()):
        return True
    if _END.search(text.strip()):
        return False
    return None


#: The language model's vote (``Generator.ends_here``: how likely the words end there) counts on words
#: of at least this many. Shorter finished answers ("a dog", "I don't know") read as going on too.
PROBE_MIN_WORDS = 4

#: Words a question opens with. Two or three words that open a question and end without a question mark
#: ("do dinosaurs", heard as "Do Dinosourced.") are most often the start of it: the language model votes
#: on them too. The 1.5B gave 22 such starts at most 0.006 (the words threshold is 0.05), and "who are
#: you" 0.72 (a one-off script on the real prompt, 2026-11-29; tests/test_real_models.py keeps two of the
#: starts); a finished one it misreads ("can we go" 0.001) waits ``unsure_ms``, where Whisper wrote no ?.
QUESTION_OPENERS = frozenset({
    "do", "does", "did", "can", "could", "is", "are", "was", "were", "will", "would", "should", "shall",
    "what", "what's", "whats", "why", "how", "where", "where's", "when", "who", "who's", "which", "have", "has",
})


def needs_probe(text: str) -> bool:
    """The language model votes on these words: four or more, or two or three that open a question, bare
    or ending with a full stop, which Whisper also writes after a cut-off phrase ("The best day ever
    was."). Not on a comma or a word that needs more (the words' own vote decides), nor on ? or ! (the
    voice asked or exclaimed)."""
    stripped = text.strip()
    if text_vote(text) is True or stripped.endswith(("?", "!")):
        return False
    words = _words(text)
    return len(words) >= PROBE_MIN_WORDS or (len(words) >= 2 and words[0] in QUESTION_OPENERS)


def probe_vote(p_end: float | None, threshold: float) -> bool | None:
    """The vote from the language model's probability that the words end where they do: unfinished
    below ``threshold`` (``TurnConfig.words_threshold``), finished from it; None: no vote."""
    if p_end is None:
        return None
    return p_end < threshold
