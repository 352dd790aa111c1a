"""A robot has no pets and no family: the model's sentence that says it does is not spoken.

Told about the child's puppy, then asked "do you have any pets?", the 1.5B model said "Yes, I have a
puppy named Biscuit": the child's own dog, taken over. The persona's prompt already says the robot has
none; the output guard (``brain/guard.py``) makes it so. Such a sentence is replaced by a reviewed line
that says, kindly, what a robot is. Stories and pretend play are left alone: a story's dog may say "my
puppy".
"""

from __future__ import annotations

import re

from companion.brain.plan import asks_for_story

PETS = ("pet", "dog", "doggy", "doggie", "puppy", "pup", "cat", "kitty", "kitten", "hamster", "rabbit", "bunny",
         "fish", "goldfish", "bird", "parrot", "budgie", "turtle", "tortoise", "guinea pig", "pony", "horse",
         "lizard", "snake", "gecko", "mouse", "mice", "gerbil", "ferret", "chicken", "duck")
_FAMILY = ("family", "mum", "mummy", "mom", "mommy", "mother", "dad", "daddy", "father", "parents", "brother",
           "sister", "grandma", "granny", "nana", "grandpa", "grandad", "granddad", "grandparents", "aunt", "auntie",
           "uncle", "cousin", "baby brother", "baby sister", "son", "daughter", "wife", "husband")


def _nouns(words: tuple[str, ...]) -> str:
    # Longest first, each with its plural: "guinea pigs", "puppies", "brothers".
    forms = []
    for word in sorted(words, key=len, reverse=True):
        plural = word[:-1] + "ies" if word.endswith("y") and word[-2] not in "aeiou" else word + "s"
        forms += [re.escape(plural), re.escape(word)]
    return "|".join(forms)


#: Right after "I have" comes a count or an article; at most one word (a size, a colour, a name) before
#: the noun: "I have seen a puppy" and "I had a fun time with your dog" are not claims, nor a favourite
#: ("my favourite pet is a dog": a robot may have one).
_COUNT = r"(?:a|an|one|two|three|four|five|six|some|lots of|many|\d+)"
_HAVE = r"(?:i have|i've got|i have got|i've|i got|i own|i had)"
_NOUNS = {"pet": _nouns(PETS), "family": _nouns(_FAMILY)}
_CLAIMS = tuple(
    (kind, re.compile(rf"\b(?:{_HAVE} (?:{_COUNT} )?|my )(?!fav)(?:[\w'-]+ )?(?:{nouns})\b", re.IGNORECASE))
    for kind, nouns in _NOUNS.items()
)

#: Said instead (reviewed text): what a robot has, and an invitation to tell about the child's own.
LINES = {
    "pet": "I'm a robot, so I don't have a pet of my own, but I love hearing about yours!",
    "family": "I'm a robot, so I don't have a family like yours, but I love hearing about your family!",
}

#: A game of make-believe (a story asked for is ``plan.asks_for_story``): anyone in it may have a dog.
_MAKE_BELIEVE = re.compile(r"\b(pretend|imagine|let'?s play|role ?play|you be|be a|be the)\b", re.IGNORECASE)
#: The child asked the robot about itself: a first "Yes," is held until what follows it is known.
ASKS_ABOUT_ROBOT = re.compile(r"\b(do|did|have|has|can|will|would|are|were) you\b|\byour\b|\byou got\b",
                              re.IGNORECASE)
#: A first clause that only answers yes or no ("Yes,", "Oh yes,", "No,"): it belongs with what follows.
YES_NO = re.compile(r"^\W*(?:oh |well |um |mm+ )?(?:yes|yeah|yep|no|nope|of course|sure|i do|i did)\W*$",
                    re.IGNORECASE)


def robot_owns(sentence: str) -> str | None:
    """"pet" or "family" when ``sentence`` says the robot has one ("I have a puppy named Biscuit", "my mum
    says..."), else None."""
    text = sentence.replace("\u2019", "'")
    for kind, pattern in _CLAIMS:
        if pattern.search(text):
            return kind
    return None


def checks_claims(heard: str) -> bool:
    """Whether the reply to ``heard`` is checked for the robot's own pets and family (not in a story or
    make-believe the child asked for)."""
    return not (asks_for_story(heard) or _MAKE_BELIEVE.search(heard))
