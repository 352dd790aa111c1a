"""Text normalisation for matching: lower case, leetspeak undone, punctuation to spaces."""

from __future__ import annotations

import re
import unicodedata

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})


def normalize(text: str, *, leet: bool = False) -> str:
    """``leet`` also maps digits and symbols inside words to letters (for word lists, not for numbers)."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = t.replace("’", "'").replace("‘", "'")
    if leet:
        t = re.sub(r"\b\w*[a-z]\w*\b", lambda m: m.group(0).translate(_LEET), t)
    t = re.sub(r"\bf\W{2,4}(k|ck)?\b", " fuck ", t)  # f***, f**k
    t = re.sub(r"\bs\W{2,3}t\b", " shit ", t)
    t = re.sub(r"(.)\1{2,}", r"\1\1", t)  # sooooo -> soo
    t = re.sub(r"\bhe'll\b", "he will", t)  # not "hell": the profanity model redirected "He'll be sad if I go."
    t = re.sub(r"'", "", t)  # what's -> whats, don't -> dont
    t = re.sub(r"[^a-z0-9@.\s]", " ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)  # keep decimal points and nothing else
    return re.sub(r"\s+", " ", t).strip()
