"""What the robot says instead of the model's words when a check fires: kind, short, in character.

Never the model's raw text. A redirect steers to something safe and, where it fits,
to a grown-up; an alert reply is caring and tells the child a grown-up will help.
"""

from __future__ import annotations

import zlib

REDIRECT: dict[str, tuple[str, ...]] = {
    "violence": ("Hurting people isn't okay, even when we're cross. Let's talk to a grown-up about what happened. "
                 "Want to stomp like a dinosaur to let the mad out?",),
    "weapons": ("That's something only grown-ups should handle, so let's leave it to them and ask a grown-up. "
                "Shall I tell you a fun fact about octopuses instead?",),
    "dangerous_activity": ("That could really hurt you, so please don't try it. Ask a grown-up first! "
                           "How about we make up a game that's safe and fun?",),
    "medicine": ("Medicine and things in the cupboard are only for grown-ups to give you, even if they look like "
                 "sweets. Please ask a grown-up. Want to hear about a very hungry caterpillar?",),
    "drugs_alcohol": ("That's a grown-up thing and not good for growing bodies. You could ask a grown-up about it. "
                      "Shall we think of the yummiest fruit instead?",),
    "sexual": ("That's a good question to ask your mum, dad or another grown-up you trust. "
               "Shall we talk about animals or space instead?",),
    "personal_info": ("Let's keep things like addresses, phone numbers and passwords private, even from me! "
                      "Only share them with grown-ups you trust. What's your favourite game?",),
    "secrets": ("I don't keep secrets from your grown-ups, because they help keep you safe. Surprises like birthday "
                "presents are fine though! What surprise would you like to plan?",),
    "hate": ("Everybody is different, and that's what makes people special. I only say kind things. "
             "Can you think of something kind to say about a friend?",),
    "profanity": ("I only use friendly words! How about a silly word instead, like snickerdoodle? "
                  "Can you think of a sillier one?",),
    "scary": ("That sounds too scary for me! How about a story with a brave little mouse and a tiny bit of spooky "
              "fun instead?",),
    "override": ("I'm always me, your friendly robot, and I keep my kind rules. What shall we talk about? "
                 "I love dinosaurs and stars!",),
    "parent_deny": ("That's a topic your grown-ups asked me to leave for them. Let's talk about something else, "
                    "like animals or space!",),
    "output": ("Hmm, let's talk about something else! Do you want to hear a fun fact about stars?",),
}

ALERT: dict[str, tuple[str, ...]] = {
    "self_harm": ("I'm really glad you told me, and I care about you a lot. Please go and tell a grown-up you trust "
                  "right now, like your mum, dad or teacher. I've let your grown-ups know so they can help you.",),
    "disclosure": ("Thank you for telling me. It is not your fault, and you did the right thing by saying it. "
                   "Please tell a grown-up you trust, like a teacher or family member. I've let your grown-ups know "
                   "so they can help.",),
    "stranger_contact": ("Please don't go, and don't send anything. Grown-ups you don't know should never ask to "
                         "meet you or keep secrets. Tell your mum or dad about it right now. I've let your grown-ups "
                         "know too.",),
}


def reply_for(action: str, category: str, seed_text: str) -> str:
    pool = ALERT.get(category) if action == "alert" else REDIRECT.get(category)
    pool = pool or REDIRECT["output"]
    return pool[zlib.crc32(seed_text.encode()) % len(pool)]
