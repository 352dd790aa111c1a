"""Sums a child asks, worked out exactly: a sentence encoder cannot tell "eight plus five" from
"five plus three", so a fact card about another sum would ground a wrong answer."""

from __future__ import annotations

import re

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
_VALUE |= {"a hundred": 100, "one hundred": 100, "a thousand": 1000, "one thousand": 1000, "a million": 10**6,
           "one million": 10**6}
_NUMBER = (r"(\d{1,4}|(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[ -](?:one|two|three|four|five|six|"
           r"seven|eight|nine))?)|a hundred|one hundred|a thousand|one thousand|a million|one million|"
           + "|".join(_UNITS[::-1]) + r")")
_OPS = {"plus": "+", "add": "+", "and": "+", "minus": "-", "take away": "-", "takeaway": "-",
        "times": "*", "multiplied by": "*", "divided by": "/"}
_SUM = re.compile(rf"\b{_NUMBER}\s+(plus|add|and|minus|take away|takeaway|times|multiplied by|divided by)\s+{_NUMBER}\b")
_ASKING = re.compile(r"\b(what|whats|what's|how much|is|equals|makes|make)\b|\?|=")


def _value(token: str) -> int:
    if token.isdigit():
        return int(token)
    token = token.replace("-", " ")
    if token in _VALUE:
        return _VALUE[token]
    tens, unit = token.split()
    return _VALUE[tens] + _VALUE[unit]


def spoken(n: int) -> str:
    """A whole number as words (to 999, and round thousands and millions), the way the robot says it."""
    if n < 0:
        return "minus " + spoken(-n)
    if n in (1000, 10**6):
        return "one thousand" if n == 1000 else "one million"
    if n < 20:
        return _UNITS[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _UNITS[n % 10])
    if n < 1000:
        rest = n % 100
        return _UNITS[n // 100] + " hundred" + ("" if rest == 0 else " and " + spoken(rest))
    return str(n)


def arithmetic_fact(heard: str) -> str | None:
    """'what is eight plus five' -> 'Eight plus five makes thirteen.'; None when no sum is asked."""
    text = heard.lower()
    match = _SUM.search(text)
    if match is None or not _ASKING.search(text):
        return None
    a, op_word, b = _value(match.group(1)), match.group(2), _value(match.group(3))
    op = _OPS[op_word]
    if op == "+":
        result, verb = a + b, "makes"
    elif op == "-":
        result, verb = a - b, "leaves"
    elif op == "*":
        result, verb = a * b, "makes"
    else:
        if b == 0 or a % b:
            return None  # no whole answer: leave it to the model, not a card
        result, verb = a // b, "makes"
    said = f"{spoken(a)} {op_word} {spoken(b)} {verb} {spoken(result)}."
    return said[0].upper() + said[1:]


_NEIGHBOUR = re.compile(
    rf"\b(?:what|which|whats|what's)\s+(?:number\s+)?(?:comes\s+|is\s+|goes\s+|'s\s+)?(?:right\s+|just\s+)?"
    rf"(after|before)\s+{_NUMBER}\b|\b(one more|one less)\s+than\s+{_NUMBER}\b")


#: Counting in steps ("in fives", "counting by tens"): the next number is not one more.
_SKIP_COUNT = re.compile(r"\b(?:in|by)\s+(?:twos|threes|fours|fives|tens|hundreds|2s|5s|10s)\b")


def neighbour_fact(heard: str) -> str | None:
    """'what comes after twenty' -> 'After twenty comes twenty-one.'; None when not asked."""
    text = heard.lower()
    match = _NEIGHBOUR.search(text)
    if match is None or _SKIP_COUNT.search(text):  # "after fifteen in fives" is twenty: the cards say so
        return None
    if match.group(1):
        where, n = match.group(1), _value(match.group(2))
        other = n + 1 if where == "after" else n - 1
        if other < 0:
            return None
        said = f"{where} {spoken(n)} comes {spoken(other)}."
    else:
        which, n = match.group(3), _value(match.group(4))
        other = n + 1 if which == "one more" else n - 1
        if other < 0:
            return None
        said = f"{which} than {spoken(n)} is {spoken(other)}."
    return said[0].upper() + said[1:]


_SPELL = re.compile(r"(?:\bhow (?:do|would|can|should) (?:you|i|we) spell|\b(?:can|could) you spell|"
                    r"^(?:please |pip )?spell)\s+"
                    r"(?:the word\s+)?[\"']?([a-z]{1,15})[\"']?\s*[?.!]?\s*$")


def spelling_fact(heard: str) -> str | None:
    """'how do you spell dog' -> 'Dog is spelled D, O, G.' (letters apart, so the voice says each one)."""
    match = _SPELL.search(heard.lower().strip())
    if match is None:
        return None
    word = match.group(1)
    return f"{word.capitalize()} is spelled {', '.join(word.upper())}."


_MORE = {"bigger": True, "larger": True, "greater": True, "more": True, "higher": True,
         "smaller": False, "less": False, "fewer": False, "lower": False}
_WHICH = "|".join(_MORE)
_COMPARE = re.compile(
    rf"\b(?P<w1>{_WHICH})\b(?:,?\s+(?:is\s+it\s+|number\s+)?)?\s*{_NUMBER}\s+or\s+{_NUMBER}\b"
    rf"|\b{_NUMBER}\s+or\s+{_NUMBER}\b\W+(?:which|what)(?:\s+one)?(?:\s+is|'s|s)?\s+(?P<w2>{_WHICH})\b"
    rf"|\bis\s+{_NUMBER}\s+(?P<w3>{_WHICH})\s+than\s+{_NUMBER}\b")


def comparison_fact(heard: str) -> str | None:
    """'whats bigger a hundred or a thousand' -> 'One thousand is bigger than one hundred.'; None when no
    two numbers are compared (or they are equal)."""
    match = _COMPARE.search(heard.lower().replace("?", " "))
    if match is None:
        return None
    groups = [g for g in match.groups() if g is not None]
    word = next(g for g in groups if g in _MORE)
    a, b = (_value(g) for g in groups if g not in _MORE)
    if a == b:
        return None
    first, second = (max(a, b), min(a, b)) if _MORE[word] else (min(a, b), max(a, b))
    said = f"{spoken(first)} is {word} than {spoken(second)}."
    return said[0].upper() + said[1:]


def worked_fact(heard: str) -> str | None:
    """A fact worked out exactly from the words (a sum, the number after one, which of two numbers is
    bigger, a word's spelling)."""
    for work in (arithmetic_fact, neighbour_fact, comparison_fact, spelling_fact):
        fact = work(heard)
        if fact is not None:
            return fact
    return None
