"""Make model text speakable for a young child's ears.

Markdown, code, emoji, URLs and list bullets are removed; a few symbols are read
as words. Digits are left to piper's phonemizer (espeak-ng), which reads
"42" as "forty-two" and "3.5" as "three point five".
"""

from __future__ import annotations

import re
import unicodedata

_SYMBOLS = {
    "&": " and ", "%": " percent", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees",
    "$": " dollars ", "€": " euros ", "£": " pounds ", "#": " number ",
}
_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_URL = re.compile(r"https?://\S+|www\.\S+")
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.M)
_MD_MARKS = re.compile(r"[*_~#>|]+")


def _is_emoji(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat in ("So", "Sk", "Cs", "Co") or 0x1F000 <= ord(ch) <= 0x1FAFF or ch in "\u200d\ufe0f"


def speakable(text: str) -> str:
    text = _CODE_BLOCK.sub(" ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _BULLET.sub("", text)
    text = "".join(ch for ch in text if not _is_emoji(ch))
    # Symbols between or after numbers/words read as words; '#' in markdown headers is gone already.
    text = re.sub(r"(?<=\d)\s*%", " percent", text)
    text = _MD_MARKS.sub(" ", text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = re.sub(r"[\[\]{}<>\\^]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    return text
