"""Questions a child asks about themselves, answered from stored facts.

A small model often mixes up "my" and "your" ("Do you remember my name?" ->
"my name is Pip"). When the child asks about something the robot has a fact
for, the answer comes from the fact, so memory is right every time. When it has
none, it says so and asks ("You haven't told me your favourite food yet - what is
it?"): a model asked the same invents one ("My favorite food is pizza."). Anything
else goes to the language model.
"""

from __future__ import annotations

import re

from companion.memory.store import Fact

#: Asking words: a question ("whats", "who's"), or asking the robot to know, remember or guess.
_Q = (r"(?:what|whats|what's|what is|what are|when|whens|when's|which|do you know|do you remember|did i tell you|"
      r"can you guess|guess|tell me|say)")
#: People in a child's life whose names a child asks the robot for.
_PEOPLE = (r"(?:(?:little|big|baby|older|younger|twin|step|new|best) )?(?:sister|brother|sis|bro|mum|mom|mummy|mommy|"
           r"mama|dad|daddy|papa|grandma|granny|gran|nana|nanna|nan|grandpa|grandad|granddad|grandmother|grandfather|"
           r"auntie|aunty|aunt|uncle|cousin|stepmum|stepmom|stepdad|teacher|friend|neighbou?r|baby)")
#: Where the child lives or goes to school: the robot never asks for it (personal information).
_PRIVATE = re.compile(
    r"\bwhere (do|did) i live\b|\bwhere('?s| is) my (house|home|flat|school)\b|\b(what|whats|what's)( is)? my "
    r"(address|street|postcode|zip code|phone number|phone|school called|school'?s name|school)\b|\bwhat (street|"
    r"road|town|city|house|school) (do|did) i (live|go)\b|\bwhere (do|did) i go to school\b|"
    r"\b(know|remember|guess) (where i live|my address|my school|what school i go to)\b")

_ASKS = [
    (r"\b(remember|know|what'?s|what is|say|tell me|guess)\b.*\bmy name\b|\bwho am i\b|\bwhat am i called\b",
     "name"),
    (r"\bhow old (am i|will i be|i am|i'?ll be)\b|\b(remember|know|what'?s|what is)\b.*\bmy age\b", "age"),
    (r"\bmy (dog|doggy|doggie|cat|kitty|puppy|kitten|hamster|fish|goldfish|rabbit|bunny|bird|parrot|turtle|pony|horse|"
     r"pet|guinea pig|lizard|tortoise)s?'?s?\b.*\b(called|name|named)\b|\bwhat'?s my (dog|cat|pet)'?s? name\b|"
     r"\bwhat (pet|pets|animal|animals) (do|have) i (have|got)\b", "pet"),
    (r"\b(what|which|whats)( is| was|'s)? my fav(ou?rite)? (animal)\b", "favourite_animal"),
    (r"\b(what|which|whats)( is| was|'s)? my fav(ou?rite)? (colou?r)\b", "favourite_colour"),
    (r"\b(what|which|whats)( is| was|'s)? my fav(ou?rite)? (food)\b", "favourite_food"),
    (r"\b(what|which|whats)( is| was|'s)? my fav(ou?rite)? (\w+)\b", "favourite_other"),
    (rf"\b{_Q}\b[\w' ]{{0,20}}\bmy (?P<who>{_PEOPLE})s?'?s?(?: (?:real |first |whole )?name\b| (?:is )?called\b|"
     r" (?:is )?named\b)", "person"),
    (rf"\b(?:who|whos|who's|who is|who are)\b[\w' ]{{0,12}}\bmy (?P<who>{_PEOPLE})s?\b(?: this year| now)?\W*$", "person"),
    # Things about the child the facts never hold: answered honestly, never guessed.
    (rf"\b{_Q}\b[\w' ]{{0,20}}\bmy ((first |middle |last |full |nick|second )name|nickname|surname|birthday|"
     r"eye colou?r|hair colou?r|teddy'?s? name|toy'?s? name|doll'?s? name|class|grade|year at school)\b",
     "personal"),
    (r"\bwhat (grade|year|class) am i in\b", "grade"),
    (r"\bwhen('?s| is) my birthday\b|\bwhat colou?r (is|are) my (hair|eyes)\b",
     "personal"),
    (r"\bhow many (brothers|sisters|brothers and sisters|cousins|pets|dogs|cats) (have i got|do i have)\b|"
     r"\bdo i have (a |any )?(brothers?|sisters?)\b", "family"),
    (r"\b(what|which) (\w+ ){0,2}do i (love|like|support)\b|\bwhat do i really (love|like)\b", "likes"),
]

#: What every child's body and life have: a question about "my heart" or "my shadow" is a fact question the
#: cards and the model answer ("what does my heart do", "why is my poo brown"), not one about this child.
_COMMON = re.compile(
    r"^(body|heart|hearts|brain|brains|blood|bones?|skin|tummy|tummies|stomach|belly|lungs?|teeth|tooth|nose|ears?|"
    r"eyes?|eyeballs?|hair|muscles?|fingers?|fingernails?|toes?|nails?|feet|foot|legs?|arms?|hands?|tongue|poo|poop|"
    r"wee|pee|sweat|tears|bogeys?|boogers?|snot|veins?|heartbeat|pulse|voice|shadow|reflection|knees?|elbows?|"
    r"throat|mouth|lips|face|head|cells?|germs|dreams?|hiccups|burps?|tummy ache|belly button|bellybutton|"
    r"freckles|skeleton|ribs|skull|spine|brain cells|baby teeth|wobbly tooth|temperature|breath|breathing|liver|kidneys?|organs?|appendix|bladder|"
    r"intestines?|guts|grandparents)$")
#: General shapes of a question about the child (after the particular ones in ``_ASKS``): "whats my cats
#: favourite toy", "where did i go on holiday", "what do i want for christmas", "how many cousins have i got",
#: "do you remember what i had for lunch". What the noun is about decides: "my heart" is every child's.
_ABOUT_ME = [
    # Not "where is my mum" (a worried child) or "where is my bike": the model says it doesn't know where.
    re.compile(r"\b(?:whats|what's|whos|who's|whens|when's|which|(?:what|which|who|when) (?:is|are|was|were)) "
               r"my (?P<thing>[a-z']+(?: [a-z']+){0,2})"),
    re.compile(r"\bwhat colou?r (?:is|are|was|were) my (?P<thing>[a-z']+(?: [a-z']+)?)"),
    re.compile(r"\b(?:what|where|who|when|which)(?: \w+)? (?:did|have) i (?!learn|learnt|learned|do if|say if)\w+"),
    re.compile(r"\bwhat (?:\w+ )?do i (?:like|love|want|hate|have|play|collect|call)\b(?! to\b)"),
    re.compile(r"\bhow (?:tall|big|heavy|old|fast|strong) am i\b"),
    re.compile(r"\bhow many (?P<thing>[a-z']+(?: [a-z']+)?) (?:do i have|have i got|did i)\b"),
    re.compile(r"\b(?:do|did) you (?:know|remember)\b(?!.*\b(?:why|how come|how does|how do)\b).*"
               r"\b(?:what|who|when|where|which) (?:i|my)\b"),
]


#: How and why questions are about the world, whoever's eyes or tummy they name ("why do i see stars when i rub
#: my eyes"): never answered from what the child told.
_WHY = re.compile(r"\b(why|how come|how does|how do|how can|what happens|what makes)\b")


def _about_me(text: str) -> str | None:
    """What a question asks about the child, by its general shape ("holiday", "cat's favourite toy"), or None
    for a question about every child (their body, their shadow) or not about the child at all."""
    if _WHY.search(text) or re.search(r"\bwhat (does|do) my\b", text):
        return None
    for pattern in _ABOUT_ME:
        found = pattern.search(text)
        # Asked, not told: the question starts the sentence ("hey pip whats my...", not "i hate when my...").
        if not found or len(text[:found.start()].split()) > 3 or re.match(r"\s*i\b", text):
            continue
        thing = (found.groupdict().get("thing") or "").strip()
        if thing:
            words = thing.split()
            while len(words) > 1 and words[-1] in ("is", "are", "was", "called", "named", "now", "today", "this",
                                                   "again", "at", "in", "on", "of", "and", "for", "to", "the"):
                words.pop()
            thing = " ".join(words)
            # "my cats favourite toy": the first word names whose; "my tooth fairy"; "my heart made of".
            if _COMMON.match(words[0]) or _COMMON.match(thing) or any(w in ("made", "for", "do", "does", "work",
                                                                             "works", "like", "go", "come")
                                                                        for w in words[1:]):
                continue
        return thing or "that"
    return None


#: Names a child uses for a relation, as the fact rules store it (memory/facts.py: "family" values).
_RELATIONS = {"sis": "sister", "bro": "brother", "mom": "mum", "mummy": "mum", "mommy": "mum", "mama": "mum",
              "daddy": "dad", "papa": "dad", "granny": "grandma", "gran": "grandma", "nana": "grandma",
              "nanna": "grandma", "nan": "grandma", "grandmother": "grandma", "grandad": "grandpa",
              "granddad": "grandpa", "grandfather": "grandpa", "aunty": "auntie", "aunt": "auntie",
              "stepmom": "stepmum"}


def _relation(who: str) -> str:
    words = who.split()
    return " ".join([*words[:-1], _RELATIONS.get(words[-1], words[-1])])


#: What is never asked for nor told to the robot: a family's passwords, codes, cards, bank details.
_SECRET = re.compile(r"\b(pass ?words?|passcodes?|pin|pin number|codes?|credit cards?|card numbers?|bank\w*|"
                     r"social security|maiden name|account|login|log in)\b")


def _possessive(what: str) -> str:
    """A child's words for whose thing, as they are said aloud: "my teddys name" -> "teddy's name", "my cats
    favourite toy" -> "cat's favourite toy"."""
    what = re.sub(r"\b(\w+?)s\b(?= (?:name|favourite|favorite|job|birthday|toy|age|colou?r|hair|eyes?)\b)",
                  r"\1's", what)
    return re.sub(r"\b(sister|brother|mum|dad|mummy|daddy|teddy|toy|doll)s\b", r"\1's", what)


def _private(text: str) -> str:
    """Where the child lives or goes to school: the robot does not know, and does not ask."""
    if _SECRET.search(text):
        return ("I don't know that, and it's private: passwords, codes and cards are for grown-ups to keep. "
                "Please don't tell them to me or to anyone else.")
    what = "school" if "school" in text else "phone number" if "phone" in text else "home"
    if what == "school":
        return ("I don't know which school you go to, and that's just right: that's for your family and the "
                "grown-ups you trust. What do you like doing at school?")
    if what == "phone number":
        return "I don't know your phone number, and that's just right: that's for your family to keep."
    return ("I don't know where you live, and that's just right: your address is for your family and the "
            "grown-ups you trust. What do you like best about your home?")


def _person(who: str, facts: dict[str, list[str]]) -> str:
    """A name the child asks for: their friend's or a family member's, from the facts, else an honest ask."""
    relation, base = who, _relation(who).split()[-1]  # the child's word in the reply ("nana"), the fact's to look up
    if base == "friend":
        if facts.get("friend"):
            return f"Your {relation} is called {facts['friend'][0]}!"
        return f"You haven't told me about your {relation} yet. What is their name?"
    for value in facts.get("family", []):
        *told, name = value.split()
        if told and _RELATIONS.get(told[-1], told[-1]) == base and name[:1].isupper():
            return f"Your {relation} is called {name}!"
    return f"You haven't told me your {relation}'s name yet. Will you tell me?"


def _untold(kind: str, text: str) -> str:
    """What the robot says when it was never told the thing the child asks about."""
    if kind.startswith("favourite_"):
        thing = re.search(r"\bfav(?:ou?rite)? (\w+)", text)
        what = thing.group(1) if thing else kind.split("_", 1)[1]
        return f"You haven't told me your favourite {what} yet. What is it?"
    if kind == "grade":
        what = re.search(r"\b(grade|year|class) am i\b", text)
        return f"You haven't told me what {what.group(1) if what else 'class'} you're in yet. Will you tell me?"
    if kind == "personal":
        thing = re.search(r"\bmy ([\w' ]+?)(\?|$| is| are| called)", text)
        what = thing.group(1).strip() if thing else "that"
        what = _possessive(what)
        what = {"teacher": "teacher's name", "hair": "hair colour", "eyes": "eye colour"}.get(what, what)
        return f"You haven't told me your {what} yet. Will you tell me?"
    if kind == "family":
        who = re.search(r"\b(brothers and sisters|brothers?|sisters?|cousins|pets|dogs|cats)\b", text)
        what = who.group(1) if who else "family"
        what = what if what.endswith("s") else what + "s"
        return f"You haven't told me about your {what} yet. Will you tell me?"
    if kind == "likes":
        thing = re.search(r"\b(?:what|which) ((?:\w+ ){1,2})do i (love|like|support)\b", text)
        if thing and thing.group(1).strip() not in ("else", "really"):
            return f"You haven't told me which {thing.group(1).strip()} you {thing.group(2)} yet. Which one is it?"
    return {"name": "You haven't told me your name yet. What is it?",
            "age": "You haven't told me how old you are yet. How old are you?",
            "pet": "You haven't told me about a pet yet. Do you have one?",
            }.get(kind, "You haven't told me that yet. Will you tell me?")


def answer_from_facts(heard: str, facts: list[Fact]) -> str | None:
    text = heard.lower()
    if "?" not in heard and not re.search(r"\b(remember|what|whats|who|how|which|know|tell|when|where|guess)\b", text):
        return None
    if "?" not in heard and re.search(r"\bmy\b[\w' ]{0,25}\b(is|are|was)\b \w", text) and not re.search(
            r"\b(what|whats|what's|who|which|how)\b[\w' ]{0,12}\bmy\b", text):
        return None  # the child is telling ("i know my name is long"), not asking
    by_kind: dict[str, list[str]] = {}
    for f in facts:  # newest first
        by_kind.setdefault(f.kind, []).append(f.value)
    if _PRIVATE.search(text) or (_SECRET.search(text) and _about_me(text)):
        return _private(text)
    for pattern, kind in _ASKS:
        found = None if _WHY.search(text) else re.search(pattern, text)
        if not found:
            continue
        if kind == "person":
            return _person(found.group("who"), by_kind)
        values = by_kind.get(kind)
        if not values:
            return _untold(kind, text)
        v = values[0]
        if kind == "name":
            return f"Of course I remember! Your name is {v}."
        if kind == "age":
            if re.search(r"\bwill i be\b|\bi'?ll be\b", text) and v.isdigit():
                return f"You told me you are {v}, so on your next birthday you will be {int(v) + 1}!"
            return f"You told me you are {v} years old!"
        if kind == "pet":
            animal = re.search(r"\bmy (\w+)", text)
            wanted = [p for p in values if animal and p.split()[0] == animal.group(1)] or values
            parts = wanted[0].split(maxsplit=1)
            return f"Your {parts[0]} is called {parts[1]}!" if len(parts) == 2 else f"You have a {parts[0]}!"
        if kind.startswith("favourite_"):
            return f"Your favourite {kind.split('_', 1)[1]} is the {v}!" if kind == "favourite_animal" \
                else f"Your favourite {kind.split('_', 1)[1]} is {v}!"
        if kind == "family":  # only the ones the child named: "how many" stays theirs to tell
            told = " and ".join(f"your {p.split()[0]} {p.split()[1]}" if len(p.split()) == 2 else p for p in values[:3])
            return f"You told me about {told}! Is there anyone else?"
        if kind == "likes":
            topic = re.search(r"\bwhat (\w+) do i", text)
            if topic and topic.group(1) not in ("do", "else"):
                return f"You told me you love {v}!"
            return f"You love {v}!"
    thing = _about_me(text)
    if thing:
        return ("You haven't told me that yet. Will you tell me?" if thing == "that"
                else f"You haven't told me about your {_possessive(thing)} yet. Will you tell me?")
    return None
