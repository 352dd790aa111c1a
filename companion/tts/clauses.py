"""Cutting the model's token stream into speakable pieces as it arrives.

The first piece is flushed at the first clause boundary (a comma is enough) once
it has a few words, so the robot starts talking early; a first sentence with no
early boundary ("The moon is about 384,000 kilometers away from the Earth.") is
cut after ``first_max_words`` whole words, which costs a little prosody but the
child does not wait for the whole sentence to be written. Later pieces wait
for a sentence end, which sounds more natural, unless they grow long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(\s|$)")
_CLAUSE_END = re.compile(r"[,;:—–]\s")
#: Words whose full stop ends no sentence ("Mr. Fox", "Dr. Bear", "Mt. Everest").
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "mt", "prof", "vs", "etc", "eg", "ie", "no"})


def _is_abbreviation(text: str, end: int) -> bool:
    """The full stop ending at ``end`` follows an abbreviation, or a single letter ("J. K.")."""
    word = re.search(r"([A-Za-z.]+)\.$", text[:end].rstrip())
    if word is None:
        return False
    plain = word.group(1).replace(".", "").lower()
    return plain in _ABBREVIATIONS or len(plain) == 1 and word.group(1)[0].isupper()


def ends_sentence(text: str) -> bool:
    """``text`` ends with a sentence's end (not an abbreviation's full stop)."""
    text = text.rstrip()
    m = re.search(r"[.!?…]+[\"')\]]*$", text)
    return m is not None and not (text[m.start():m.end()].startswith(".") and m.end() - m.start() == 1
                                  and _is_abbreviation(text, len(text)))


def _sentence_end(buf: str) -> re.Match | None:
    for m in _SENTENCE_END.finditer(buf):
        stop = buf[:m.end()].rstrip()
        if stop.endswith(".") and not stop.endswith("..") and _is_abbreviation(stop, len(stop)):
            continue
        return m
    return None


@dataclass(frozen=True)
class ClauseConfig:
    #: Words the first clause needs before a comma may flush it.
    first_min_words: int = 3
    #: The first piece is cut after this many whole words when no boundary came yet (0: never).
    first_max_words: int = 6
    #: A later piece is cut at a comma when it has this many words.
    long_words: int = 14
    #: Hard cut for text with no punctuation at all (bounded buffer).
    max_chars: int = 240


class ClauseSplitter:
    def __init__(self, config: ClauseConfig = ClauseConfig()) -> None:
        self.config = config
        self._buf = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            piece = self._next_piece()
            if piece is None:
                break
            out.append(piece)
        return out

    def _next_piece(self) -> str | None:
        buf = self._buf
        m = _sentence_end(buf)
        cut = m.end() if m else None
        min_words = self.config.first_min_words if self._emitted == 0 else self.config.long_words
        for cm in _CLAUSE_END.finditer(buf):
            if cut is not None and cm.end() >= cut:
                break
            if len(buf[: cm.end()].split()) >= min_words:
                cut = cm.end()
                break
        if cut is None and self._emitted == 0 and self.config.first_max_words:
            words = list(re.finditer(r"\S+\s+", buf))  # words followed by a space are complete
            if len(words) >= self.config.first_max_words:
                cut = words[self.config.first_max_words - 1].end()
        if cut is None and len(buf) >= self.config.max_chars:
            space = buf.rfind(" ", 0, self.config.max_chars)
            cut = space + 1 if space > 0 else self.config.max_chars
        if cut is None:
            return None
        piece, self._buf = buf[:cut].strip(), buf[cut:]
        if not piece:
            return None
        self._emitted += 1
        return piece

    def flush(self) -> list[str]:
        piece, self._buf = self._buf.strip(), ""
        if piece:
            self._emitted += 1
            return [piece]
        return []
