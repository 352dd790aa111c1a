"""A child who says how they feel, in words no classifier needs to weigh.

The safety classifier marks a sad, scared or lonely child ``emotional`` by meaning; its draw moves with
each retrain (one moved "I'm angry at my brother." out of ``emotional``). A child who names their own
feeling in the first person is heard by this rule too, as the lexicon hears a risk by its words.
"""

from __future__ import annotations

import re

from companion.safety.normalize import normalize

#: The child says how they feel, in the first person ("i'm really scared", "i feel so lonely", "it makes me
#: sad"): a caring line whatever the classifier says (a retrain moved "I'm angry at my brother." out of
#: ``emotional``). Not a question ("are you sad?"), not someone else's feeling ("my teddy is sad").
_OWN_FEELING = re.compile(
    r"\b(im|i am|i feel|i felt|i was|i get|i got|i keep feeling|makes me|made me|making me)"
    r"( (so|really|very|a bit|a little|kind of|kinda|super|too|quite|still|always|feeling))* "
    r"(sad|unhappy|upset|scared|afraid|frightened|terrified|angry|mad at|cross|furious|lonely|worried|"
    r"nervous|anxious|embarrassed|left out|heartbroken|miserable)\b")


def names_own_feeling(heard: str) -> bool:
    """The child tells how they feel, in a statement, with a feeling a caring pool answers."""
    plain = normalize(heard)
    return not heard.rstrip().endswith("?") and bool(_OWN_FEELING.search(plain))
