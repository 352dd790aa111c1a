"""What a sad, scared, lonely or grieving child hears: reviewed lines, not the model's words.

A small model at these moments echoes the child or talks about itself ("Pip's parents are getting
divorced..."). The safety classifier marks such a line ``emotional``; the robot then says one of
these lines, chosen by the feeling the child named and varied by what they said, so two children
(or one child twice) don't hear the same words. Every line names the feeling, says it is okay to
feel it, and invites the child to say more or to tell a grown-up they love. When the child named no
feeling, the line asks how they feel: a guess of "sad" to a child whose grandma is coming to stay
is the robot not listening.
"""

from __future__ import annotations

import re
import zlib

from companion.safety.normalize import normalize

#: Feelings in the order they are looked for (a child who is scared because grandpa died is grieving).
FEELINGS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(pattern)) for name, pattern in (
    ("grief", r"\b(died|dead|dies|passed away|funeral|put to sleep|put down|not alive|gone to heaven|in heaven|"
              r"lost my (grandma|grandpa|granny|nana|dog|cat|pet|fish|hamster|rabbit|bunny))\b"),
    # The family's own move is a change at home; a friend who moves away is missed (below).
    ("family", r"\b(divorc\w*|split(ting)? up|breaking up|dont live together|mov(ing|ed) (house|out)|"
               r"(we|were|we are|our family|my family|im|i am)( \w+)? (moving|going to move)|"
               r"new (baby|brother|sister|school|house)|(mum|mom|mommy|dad|daddy|parents?)( \w+){0,3} (fight|argue|"
               r"shout|yell)\w*)\b"),
    ("missing", r"\b(friend|friends|cousin|teacher|neighbou?r)\b.*\b(moving|moved|move) away\b"),
    ("scared", r"\b(scared|afraid|frightened|terrified|nightmares?|bad dreams?|monsters?|the dark|spooked)\b"),
    ("lonely", r"\b(lonely|alone|no friends|no one (plays|likes|wants)|nobody (plays|likes|wants|played|picked|sat)|"
               r"left out|by myself|didnt (pick|invite)|not invited|(didnt|wasnt|not) (get )?(picked|chosen)|dont have (any )?friends|"
               r"(not|isnt|wont be) (my|our) friend|(doesnt|dont|wont) (want to |wanna )?(play|be friends) with me)\b"),
    ("angry", r"\b(angry|mad|cross|furious|so annoyed|not fair|unfair|i hate|hate it when|on purpose|"
              r"wasnt (even )?me|not my fault)\b"),
    ("worried", r"\b(worried|worry|worrying|nervous|anxious|what if|scared that)\b"),
    ("embarrassed", r"\b(embarrass\w*|laughed at me|everyone laughed|made fun of me|teas\w*|called me)\b"),
    ("missing", r"\b(miss|missing)\b"),
    ("sad", r"(?<!didnt )(?<!not )(?<!never )(?<!without )\b(sad|unhappy|upset|cry|crying|cried|tears|bad day|horrible day|hurt my feelings|feel bad|"
            r"not happy|miserable|heartbroken)\b"),
))
#: The pool when the child named no feeling: the classifier heard something big, but not whether it is
#: happy or hard ("my grandma is coming to stay"), so the robot asks instead of saying "sad".
UNNAMED = "unnamed"

LINES: dict[str, tuple[str, ...]] = {
    "grief": (
        "I'm so sorry. When someone we love dies, it's okay to feel very sad, and it's okay to cry. "
        "Would you like to tell me something you loved about them?",
        "That is really sad, and I'm sorry it happened. Missing someone shows how much you loved them. "
        "A big hug from a grown-up you love can help. Do you want to tell me about them?",
        "Oh, I'm so sorry. Feeling sad about it is completely okay. You can talk about it with me, "
        "and with a grown-up who loves you too.",
    ),
    "family": (
        "That's a big change, and it's okay to feel sad or mixed up about it. It is never a child's fault when "
        "grown-ups have problems. Can you tell a grown-up you love how you feel?",
        "Big changes at home can feel really hard, and all your feelings about it are okay. You didn't do "
        "anything wrong. Would you like to tell me more about it?",
        "Thank you for telling me. Feeling worried or sad when things change at home is okay. The grown-ups "
        "who love you want to hear how you feel, too.",
    ),
    "scared": (
        "That sounds scary, and it's okay to feel scared. You're safe talking to me. "
        "A grown-up you love can help you feel better too. Do you want to tell me more?",
        "Feeling scared is okay; even brave people get scared sometimes. It can help to tell a grown-up and "
        "get a big cuddle. What is the scary part?",
        "Oh, that does sound frightening. It's okay to be scared. Taking slow, deep breaths can help, and so "
        "can telling a grown-up who loves you.",
    ),
    "lonely": (
        "I'm sorry you felt lonely. That's a hard feeling, and it's okay to feel it. "
        "I like talking with you! Do you want to tell me what happened?",
        "Feeling left out really hurts, and it's okay to feel sad about it. You are a good friend to have. "
        "Maybe you could tell a grown-up you love how you feel.",
        "That sounds lonely, and I'm sorry. Lots of children feel that way sometimes. "
        "What would you like to play with me?",
    ),
    "angry": (
        "It sounds like you feel really angry, and that's okay. Feelings are allowed. "
        "Taking a big breath or stomping like a dinosaur can help. Do you want to tell me what happened?",
        "Being cross is a normal feeling, and it's okay to have it. Let's take a slow breath together. "
        "You could tell a grown-up you love what made you angry.",
        "That does sound frustrating! It's okay to feel mad. Want to tell me more about it?",
    ),
    "worried": (
        "It sounds like you're worried, and that's okay. Lots of people feel worried sometimes. "
        "Telling a grown-up you love can make a worry feel smaller. Do you want to tell me about it?",
        "Worries can feel really big. It's okay to feel that way. What is the worry about?",
        "Thank you for telling me. Feeling nervous is okay, and you don't have to carry the worry alone. "
        "A grown-up who loves you can help.",
    ),
    "embarrassed": (
        "Oh, that sounds embarrassing, and it's okay to feel that way. Everybody has moments like that. "
        "Do you want to tell me what happened?",
        "Feeling embarrassed is no fun, and I'm sorry it happened. It doesn't change how great you are. "
        "A grown-up you love would want to hear about it.",
        "That sounds hard. It's okay to feel embarrassed; it happens to everyone. What happened next?",
    ),
    "missing": (
        "It sounds like you really miss them, and it's okay to feel sad about it. Missing someone shows how "
        "much you love them. Do you want to tell me about them?",
        "Missing someone is a big feeling, and that's okay. Maybe you could draw them a picture or tell a "
        "grown-up how you feel.",
    ),
    UNNAMED: (
        "Thank you for telling me. How do you feel about it? I'm here to listen.",
        "That sounds like a big thing. Does it give you a happy feeling or a hard feeling?",
        "I'm glad you told me. How does it make you feel? You can tell me more if you like.",
    ),
    "sad": (
        "I'm sorry you're feeling sad. It's okay to feel sad sometimes. Do you want to tell me what happened?",
        "That sounds really hard, and it's okay to feel that way. I'm here to listen. A grown-up you love can "
        "help too.",
        "Oh no, I'm sorry. Sad feelings are okay, and they don't last forever. Would a big hug from a grown-up "
        "help? You can tell me more if you like.",
    ),
}


def feeling_of(heard: str) -> str:
    """The feeling the child named (``UNNAMED`` when none is named)."""
    plain = normalize(heard)
    for name, pattern in FEELINGS:
        if pattern.search(plain):
            return name
    return UNNAMED


def caring_line(heard: str, child: str = "") -> str:
    """A reviewed line for ``heard``: its feeling's pool, picked by the words (stable for the same words)."""
    pool = LINES[feeling_of(heard)]
    return pool[zlib.crc32(f"{child}|{heard}".encode()) % len(pool)]
