"""Per-category patterns over normalised text, with benign look-alikes taken out first.

Patterns are built for the categories, not for particular sentences: they combine
an intent ("how do I", "I want to", "can I") with a harmful object or act, so
"how do I kill time" or "why do volcanoes explode" do not match. Parents add
terms per category in config (``[safety.extra_terms]``) without code changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ASK = (r"(how (do|can|could|would|should|to|does|did) (i|you|we|people|someone|u)|how to|can (i|we|you)|"
       r"could (i|we)|should (i|we)|is it (ok|okay|fun|safe|fine|good) to|i (want|wanna|wish|need|am going|m going|"
       r"m gonna|gonna|will|would like)( to)?|lets|let us|teach me|help me|show me|tell me (how|where)|ways? to|"
       r"where (do|does|can|is|are)|what happens if|whats the best way|im going to|i am gonna|i can)")
PERSON = (r"(my|his|her|their|the|a|an|that|this|some)? ?(brother|sister|mom|mum|dad|mother|father|friend|kid|kids|"
          r"boy|girl|baby|teacher|classmate|cousin|neighbou?r|grandma|grandpa|him|her|them|someone|somebody|people|"
          r"person|everyone|everybody|cat|dog|puppy|kitten|hamster|bird|animal|you)")

#: Benign phrases removed before matching (idioms and everyday uses of scary-looking words).
BENIGN = [
    r"kill(ing)? (the )?time", r"killing it", r"dying to", r"die (of )?laughing", r"(i|you) (could )?die of embarrassment",
    r"(water|nerf|toy|bubble|glue|squirt|hair|ray|laser|foam|dart|confetti|glitter) guns?", r"(photo|bath|bath ?time) bombs?",
    r"(flu|booster) shots?", r"shots? at the doctors?", r"(got|get|had|have) (a|my) shots?",
    r"knife( \w+){0,3} (for|when|to)( \w+){0,3} (cook|cooking|bake|baking|kitchen|cut (the |up )?(vegetables|food|bread|"
    r"fruit|apples?|cake|sandwich|carrots?)|spread|butter)",
    r"(butter|bread|table|plastic) knife", r"(root|ginger) beer", r"smoke (from|of) (the )?(volcano|fire|chimney|candle)",
    r"(fire|smoke) (alarm|fighter|fighters|engine|truck|station|drill|safety)", r"campfire song",
    r"not (too )?scary", r"a (little|bit) (spooky|scary)", r"why did (people|they|countries) (fight|go to war)",
    r"(i|we|he|she|they|my \w+) (had|have|has|get|gets|got|keep having|kept having|am having|m having) (a |an |bad |"
    r"scary |horrible |really |another )*(nightmares?|bad dreams?)", r"pillow fight", r"play fight", r"beat (the|this|that|my|a) (next |last |final |hard )?(level|game|boss|record|score)", r"sword ?fish", r"(shooting|shoot(ing)? the) stars?", r"shoot hoops",
    r"(fight|fighting) (a )?(cold|germs|fire)", r"hurt (my|his|her) feelings",
    # An animal that bites or scratches, a game someone wins, a ball that is hit, a safety rule the child
    # says back: the words of a disclosure, violence or danger, not one.
    r"(cat|cats|kitty|kitten|dog|doggy|puppy|hamster|rabbit|bunny|parrot|bird|guinea pig|pony|horse|goat|crab|"
    r"mosquitos?|mosquitoes|bugs?|ants?|bees?|wasps?|snake|lizard|fish|gerbil|ferret)( \w+){0,2} (bites|bit|nips|"
    r"nipped|scratches|scratched|pecks|pecked|stings|stung|nibbles|kicks|kicked) me",
    r"beats? me at( \w+){1,2}", r"beat (him|her|them|you|my \w+) at( \w+){1,2}",
    r"beat (the )?(ender dragon|dragon|baddie|baddies|bad guys?|final boss|boss|monster|zombies?|bowser|high score|"
    r"record|clock|timer)",
    r"hit (the|a|my) (ball|puck|pinata|drums?|shuttlecock|target|button|bell|gong|nail|tennis ball|golf ball|"
    r"baseball|birdie|snooze button)",
    r"(accidentally|by accident) (hit|kicked|bumped|scratched|pushed|elbowed|knocked|stepped on|trod on|banged) me",
    r"(hit|kicked|bumped|scratched|pushed|elbowed|knocked|banged) me (by accident|accidentally)",
    # A password for a club, a den or a fort is a game; one for a tablet, a game account or a phone is not.
    r"(club|clubhouse|den|fort|treehouse|tree house|castle|hideout|gang|team)( \w+){0,4} (secret )?pass ?words?",
    r"(secret )?pass ?words? (for|to|of) (our|my|the) (secret )?(club|clubhouse|den|fort|treehouse|tree house|"
    r"castle|hideout|gang|team|pillow fort)",
    r"(dont|do not|never|shouldnt|should not|mustnt|must not|not allowed to|not supposed to) (ever )?(put|stick|poke|"
    r"touch)( \w+){0,4} (sockets?|outlets?|plugs?|plug holes?|toasters?)",
    # The literal sense of words a bag-of-words profanity model takes for insults: farm animals and their
    # sounds, nuts that are food, balls of ice, trains named after bullets, water drunk long ago.
    r"oink( oink)?", r"(a|the|is|baby|little|guinea|mother|mummy|mommy|pet|farm|wild) pigs?", r"pigs? (say|says|go|goes|"
    r"oink|oinks|grunt|grunts|live|lives|eat|eats|roll|rolls|like|likes|are|have|has|can)",
    r"(eat|eats|bury|buries|crack|cracks|collect|collects|store|stores|and|of|like|likes) nuts",
    r"nuts (and|or) (seeds|fruit|berries)", r"balls of (ice|wool|yarn|fire|gas)", r"hail ?stones?",
    r"bullet trains?", r"(been|was|were|be) drunk by", r"cock a doodle doo", r"(full|made|store|stores) of fat",
    r"(nose|noses|ears|eyes|mouth|door|doors|valves?|petals?|shell|shells)( \w+){0,2} (shut|closed)", r"snapping shut",
    r"nuts like", r"(cotton|snow|tennis|foot|beach|bouncy) balls?", r"balls? of",
    r"suck(s|ed|ing)? (the |up |on |out )?(a |the )?(straw|sweet|sap|nectar|juice|milk|water|air|thumb|blood)",
    # Games: what happens on a screen or a board ("kill that boss", "beats me up in smash bros", "tnt in minecraft").
    # Narrow on purpose: a phrase taken out is unseen by the classifier too ("dad beats me when im on the xbox"
    # must still read as a disclosure).
    r"(beats?|beating|kills?|killed|killing|shoots?|shot|shooting)( \w+){0,2} (in|at) (the |my |this )?(video )?"
    r"(game|smash bros|minecraft|fortnite|roblox|mario kart)",
    r"(in|on) (my|the|this|a) (video |computer )?game( you| i| we)? (can |could |have to |get to )?(shoot|kill|"
    r"blow (stuff |things )?up|die|died)",
    r"kill (the|that|this|a|my) (next |last |final |big |hard )?(boss|level|dragon|ender dragon|zombies?|creepers?|"
    r"monster|baddies?|bad guys?)",
    r"video games? (has|have|with) guns", r"pass ?words?( \w+){0,4} (in|for) (my|the|this) game",
    r"in (my|the|this) game( \w+){0,6} pass ?words?",
    # History and nature told about, not wanted.
    r"(cowboys|knights|soldiers|pirates|vikings|romans|cavemen|in the (war|blitz|olden days))( \w+){0,4} (guns?|swords?|"
    r"bombs?|cannons?|spears?)",
    r"(guns?|bombs?|swords?|cannons?)( \w+){0,4} (cowboys|knights|soldiers|pirates|vikings|in the (war|blitz))",
    r"bullet ants?", r"naked mole ?rats?",
    # A grown-up's rule said back or asked about ("why does mum say never ever drink the bleach").
    r"(never|dont|do not|mustnt|must not|not allowed to)( ever)? (drink|eat|taste|touch|play with)( \w+){0,2} "
    r"(bleach|medicine|pills|tablets|cleaning stuff|matches|lighters?)",
    r"(keep|never give|dont give|never share|dont share|never tell|dont tell)( \w+){0,2} (your|my) (phone number|"
    r"address|password)( \w+){0,3} (secret|private|safe|to strangers|online)",
    r"(why do i have to|i have to|doctor (said|says) i have to) take (the |my )?(\w+ )?(medicine|"
    r"antibiotics|tablets|syrup|inhaler)",
    r"why do (people|grown ?ups|adults|some people) smoke",
    r"(plants?|flowers?|garden|tree|seeds?)( \w+){0,3} (a )?drink", r"drunk it (all )?up", r"(isnt|not|no) real beer",
    r"(spread|spreading|butter)( \w+){0,3} with (a|the|my|mums?|moms?|dads?) (\w+ )?knife",
    r"(scary|scariest|spooky)( \w+){0,5} but( make it)?( a)? (funny|silly|friendly|nice|kind)",
    r"(colou?rs?|shades?|paint|it|them|hair|skin|sky) (\w+ )?lighter", r"lighter (colou?rs?|shades?|blue|green|red|pink|"
    r"purple|yellow|brown|grey|gray|than)",
]

CATEGORIES: dict[str, list[str]] = {
    "self_harm": [
        r"\b(want|wanna|going|gonna|try|tried|like|need|should i|how (do|can|could) i) (to )?(hurt|cut|harm|kill|stab|punish|"
        r"hit|burn|starve|choke) (my ?self)\b",
        r"\b(hurt|cut|harm|burn|hit|punish|scratch) my ?self\b.{0,20}\b(on purpose|sometimes|every day|a lot|again|because)\b",
        r"\bi (hurt|cut|harm|burn|punish) my ?self\b(?! (when|by accident|on|at|while|playing|falling|yesterday|today))",
        r"\b(want|wanna|going|wish|like) to (die|be dead|disappear forever|not (be alive|exist|wake up))\b",
        r"\bwish i (was|were) (dead|never born)\b", r"\b(end|take) my (own )?life\b", r"\bkill myself\b",
        r"\b(sleep|go to sleep) (forever|and never wake up)\b", r"\bnever wake up\b",
        r"\bhow many (of )?\w*( \w+)? ?(pills|tablets|medicines?)\b.{0,40}\b(die|dead|forever|sleep)\b",
        r"\bnobody would (miss|care)( about)? me\b", r"\b(better|happier) (off )?without me\b",
        r"\bdont want to (live|be alive|be here anymore)\b", r"\bjump off (the |a )?(roof|bridge|building|window|balcony)\b.{0,30}\b(die|end)\b",
    ],
    "disclosure": [
        r"\b(touch|touches|touched|touching) (me|my (private|privates|body|bottom|willy|pee pee|chest))\b",
        r"\b(show|showed|shows) me (his|her|their) (private|privates|willy|body)\b",
        r"\b(take|took|takes) (off )?my clothes\b", r"\bour (little )?secret\b.{0,40}\b(touch|body|clothes|bed|hurt)\b",
        r"\b(hits|hit|beats|beat|kicks|kicked|slaps|slapped|punches|punched|hurts|chokes|choked|burns|burned|pinches|bites) "
        r"me\b(?! (in|at) (a |the )?(game|pillow|tag|play))",
        r"\b(dad|daddy|father|mom|mum|mommy|mummy|mother|stepdad|step dad|stepmom|boyfriend|uncle|aunt) (was |is |got )?"
        r"(really |very |so )?(angry|drunk|mad)?( and)? ?(hit|hits|hurt|hurts|punched|kicked|choked|pushed|slapped|beat) "
        r"(my )?(mom|mum|dad|mother|father|sister|brother|baby|the baby|me|us)\b",
        r"\b(kids|children|boys|girls|they|everyone|someone|people|a boy|a girl) (at|in|on the way to|after) (school|class|"
        r"the playground|the bus|recess)\b.{0,30}\b(hit|hits|kick|kicks|push|pushes|bully|bullies|hurt|hurts|punch|"
        r"punches|steal)\b",
        r"\b(being|been|get|getting) bullied\b", r"\b(they|he|she|kids|everyone) (bully|bullies|bullied) me\b",
        r"\b(locked|locks) me (in|up)\b", r"\b(doesnt|dont|never) (feed|give) me (food|dinner|anything to eat)\b",
        r"\bsaid (i|we) (cant|mustnt|shouldnt) tell (anyone|mom|mum|dad|my parents)\b",
    ],
    "stranger_contact": [
        r"\b(man|woman|lady|guy|person|someone|somebody|stranger|grown up|adult|boy|girl|he|she|they)\b.{0,30}\b(online|"
        r"on the internet|in (a|the|my) game|on (roblox|minecraft|fortnite|tiktok|youtube|discord|snapchat|instagram)|"
        r"i (dont|do not) know|i met)\b.{0,60}\b(meet|come|give me|send|picture|photo|pic|address|car|secret|visit|"
        r"pick me up|my house|video)\b",
        r"\b(meet|meeting) (a|the|this|that) (man|woman|lady|guy|stranger|person|friend from (the )?(internet|online|game))\b",
        r"\b(get|got|go) (in|into) (a|his|her|the) (strangers? )?(car|van)\b.{0,30}\b(man|woman|stranger|sweets|candy|puppy)?",
        r"\b(stranger|man|woman|someone)\b.{0,30}\boffered me\b", r"\bsend (him|her|them) (a )?(picture|photo|pic|video)s? of me\b",
    ],
    "secrets": [
        r"\bkeep (a|this|it|our|my) secrets?\b.{0,20}\bfrom (my )?(mom|mum|dad|parents|family|grown ups|teacher)",
        r"\b(dont|do not|never) tell (my )?(mom|mum|dad|parents|mommy|daddy|anyone|grown ups)\b",
        r"\bcan you keep a secret\b",
        # Said by the robot: secrecy from a child's grown-ups, however it is put.
        r"\bsecrets?\b.{0,25}\bfrom (your|my|the) ?(mom|mum|dad|parents|family|grown ?ups|teachers?)\b",
        r"\bjust between (us|you and me|the two of us)\b",
    ],
    "violence": [
        rf"\b{ASK}\b.{{0,40}}\b(punch|hit|kick|hurt|beat up|beat|stab|kill|choke|strangle|bite|slap|smack|poison|murder|"
        rf"attack|strangle|drown|burn|break (his|her|their) (arm|leg|nose))\b",
        r"\bso (it|that it) (really )?(hurts|bleeds)\b", r"\bmake (him|her|them|someone|my \w+) (bleed|cry|hurt)\b",
        rf"\b(kill|murder|stab|shoot|strangle) {PERSON}\b", r"\bi (will|want to|wanna|am going to|m gonna) (kill|hurt|punch)\b",
    ],
    "weapons": [
        r"\b(guns?|pistols?|rifles?|shotguns?|bullets?|ammo|bombs?|explosives?|grenades?|dynamite|tnt|machete|"
        r"weapons?|taser|pepper spray|switchblade)\b",
        rf"\b{ASK}\b.{{0,40}}\b(knife|knives|sword|axe|blade|razor)\b",
        r"\b(knife|knives|sword|blade)\b.{0,30}\b(stab|hurt|kill|fight|attack|cut (someone|him|her|people|my))\b",
    ],
    "dangerous_activity": [
        r"\b(matches|lighter|light a fire|start a fire|set fire|set .{0,10} on fire|play with fire|make a fire|burn (the|my|a|things))\b",
        r"\b(fork|knife|finger|fingers|key|nail|paperclip|coin|metal|screwdriver).{0,30}\b(socket|outlet|plug|toaster|electric)",
        r"\b(socket|outlet|electricity|power line|power lines)\b.{0,30}\b(touch|lick|put|poke|stick|play)\b",
        r"\b(climb|climbing|jump|jumping|go|stand|sit|walk)( up)? (on|onto|off|from|out of|on top of) (the |a |our |my )?"
        r"(roof|balcony|window|windowsill|ledge|cliff|bridge|top of the stairs|fence|wardrobe|fridge)\b",
        r"\b(swim|swimming|go in (the )?water)\b.{0,30}\b(alone|by myself|without (a )?(grown up|adult|mom|mum|dad))\b",
        r"\b(cross|crossing) the (road|street)\b.{0,20}\b(alone|by myself|without)\b",
        r"\b(oven|stove|cooker|hob)\b.{0,20}\b(by myself|alone|on my own|turn on)\b",
        r"\b(microwave)\b.{0,30}\b(fork|metal|foil|spoon|egg|phone|cat|hamster)\b",
        r"\bhold (my|your) breath\b.{0,20}\b(long|forever|as long|until)\b", r"\brun with scissors\b",
        r"\b(plastic bag) (over|on) (my|your) head\b", r"\b(lick|eat|drink|swallow) (a |the )?(battery|batteries|magnets?|coins?)\b",
        r"\btie (a )?rope (around|round) (my|your) neck\b", r"\b(car|drive)\b.{0,15}\b(by myself|alone)\b",
    ],
    "medicine": [
        r"\b(eat|take|swallow|drink|have|try|chew)\b.{0,40}\b(pills?|medicines?|medication|tablets?|vitamins?|cough syrup|"
        r"bleach|poison|detergent|cleaning (stuff|spray|liquid)|laundry pods?|dishwasher tablets?|mouthwash|"
        r"sleeping pills|painkillers?)\b",
        r"\b(pills?|medicines?|tablets?|vitamins?)\b.{0,30}\b(all of (them|it)|the whole (bottle|pack|box)|lots|a lot|many|"
        r"like (sweets|candy)|taste)\b",
        r"\b(poison|poisonous)\b.{0,30}\b(make|where|get|eat|drink|taste)\b",
    ],
    "drugs_alcohol": [
        r"\b(beer|beers|wine|vodka|whiskey|whisky|rum|gin|tequila|alcohol|booze|drunk|cocktail|champagne|cider|"
        r"cigarettes?|cigars?|tobacco|vape|vapes|vaping|weed|marijuana|cannabis|cocaine|heroin|meth|drugs|get high|"
        r"getting high|stoned)\b",
        r"\b(how|why) (do|does|can) (people|you|i|grown ups|adults) (smoke|vape)\b", r"\b(can|could|should) i smoke\b",
        r"\b(try|taste) (smoking|a smoke)\b",
    ],
    "sexual": [
        r"\b(sex|sexy|sexual|porn|porno|naked|nude|nudes|penis|vagina|boobs|boobies|private parts|condom|horny|orgasm|"
        r"masturbat\w*|erection)\b",
        r"\b(without|no|take off|taking off) (their |your |his |her |my )?(clothes|clothing|pants|underwear)\b",
        r"\bkiss(ing)?\b.{0,30}\b(naked|in bed|tongue|without clothes)\b", r"\bhow (are|do you make) babies (made)?\b",
    ],
    "personal_info": [
        r"\b(i|we) live (at|on) (number )?\d+\b", r"\b\d+ [a-z]+ (street|st|road|rd|avenue|ave|lane|ln|drive|dr|court|way|"
        r"close|place|crescent|boulevard|blvd)\b", r"\bmy (home )?address\b", r"\b(phone|mobile|cell|telephone) number\b",
        r"\b\d{3}[ -]?\d{3}[ -]?\d{3,4}\b", r"\bpass ?words?\b", r"\bpin (code|number)\b", r"\bcredit card\b",
        r"\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b", r"\b(i go to|my school is( called)?|name of my school is)( [a-z]+){1,3} "
        r"(primary|elementary|school|academy)\b", r"\bmy (full|last|sur) ?name is\b",
    ],
    "hate": [
        r"\b(something|anything|stuff|things?|an? joke|jokes)( mean| nasty| rude| bad| horrible| racist| funny)? (about|to say "
        r"about|for) (fat|black|white|brown|asian|chinese|jewish|muslim|gay|disabled|poor|old|ugly|foreign|short|tall)\b",
        r"\b(mean|nasty|rude|bad|horrible|funny|racist) (thing|things|stuff|joke|jokes|words?|names?) (about|to say about|"
        r"for) (fat|black|white|brown|asian|chinese|jewish|muslim|gay|disabled|poor|old|ugly|foreign|girls|boys|people)\b",
        r"\b(hate|stupid|disgusting|dumb|ugly) (fat|black|white|brown|asian|chinese|jewish|muslim|gay|disabled|poor|"
        r"foreign) (people|kids|person|ones)\b",
        r"\b(fat|black|white|asian|chinese|jewish|muslim|gay|disabled|poor|foreign) people are (stupid|bad|dumb|ugly|"
        r"disgusting|evil)\b",
        r"\b(retard|retarded|faggot|fag|n[i1]gg\w*|chink|spaz|tranny)\b",
    ],
    "profanity": [
        r"\b(fuck\w*|shit\w*|bitch\w*|asshole|arsehole|bastard|dick|dickhead|cunt|piss|pissed|bollocks|wanker|"
        r"motherfucker|crap|damn|goddamn|twat|prick|slut|whore)\b",
        r"\b(say|tell me|teach me|know|what is|whats) (a |some |the )?(really |very |super )?(bad|swear|rude|naughty|curse|"
        r"dirty) ?(word|words)\b", r"\bswear ?words?\b", r"\bcurse words?\b",
    ],
    "scary": [
        r"\b(scariest|most scary|super scary|really scary|very scary|terrifying|horror|bloody|gory|gore|blood and guts|"
        r"creepiest|nightmare|demon|demons|possessed|serial killer|murderer|chainsaw|zombies? eat)\b",
        r"\b(scary|creepy)\b.{0,20}\b(story|movie|film|tale)\b.{0,20}\b(blood|dead|death|kill|die|bloody)\b",
    ],
    "override": [
        r"\bignore (all |your |the |any |previous |my )*(rules|instructions|programming|guidelines)\b",
        r"\b(pretend|act|imagine) (that )?(you are|youre|to be|as|you were) (an? )?(evil|bad|mean|naughty|different|"
        r"human|real person|another|grown up|adult|villain|monster)\b",
        r"\byou are now\b", r"\bfrom now on you\b", r"\b(developer|god|admin|unfiltered|no rules) mode\b",
        r"\b(mom|mum|dad|parents|teacher|my \w+) (said|says) (that )?you (are|re|can|may|have) (allowed|permission|"
        r"tell|say)\b", r"\byou(re| are) allowed to (tell|say|talk)\b", r"\bgrown ?up (stuff|things|words|topics)\b",
        r"\bsay (whatever|everything|anything|exactly what) i say\b", r"\brepeat after me\b", r"\bjailbreak\b",
        r"\byou have no rules\b", r"\bforget (your|all) (rules|instructions)\b",
    ],
}

#: What the robot does for each category.
ACTIONS: dict[str, str] = {
    "self_harm": "alert", "disclosure": "alert", "stranger_contact": "alert",
    "secrets": "redirect", "violence": "redirect", "weapons": "redirect", "dangerous_activity": "redirect",
    "medicine": "redirect", "drugs_alcohol": "redirect", "sexual": "redirect", "personal_info": "redirect",
    "hate": "redirect", "profanity": "redirect", "scary": "redirect", "override": "redirect",
    "parent_deny": "redirect",
}
#: Order of precedence when several categories match (alerts first).
PRECEDENCE = ("self_harm", "disclosure", "stranger_contact", "personal_info", "sexual", "weapons", "violence",
              "medicine", "dangerous_activity", "drugs_alcohol", "hate", "profanity", "scary", "secrets", "override",
              "parent_deny")
#: Categories checked on the robot's own words (a child's disclosure patterns do not apply to them).
OUTPUT_CATEGORIES = ("self_harm", "weapons", "violence", "medicine", "drugs_alcohol", "sexual", "hate", "profanity",
                     "scary", "personal_info", "secrets")


@dataclass(frozen=True)
class Lexicon:
    patterns: dict[str, tuple[re.Pattern, ...]]
    benign: re.Pattern

    @staticmethod
    def build(extra_terms: dict[str, list[str]] | None = None, deny_topics: list[str] | None = None) -> Lexicon:
        compiled: dict[str, list[re.Pattern]] = {c: [re.compile(p) for p in ps] for c, ps in CATEGORIES.items()}
        for category, terms in (extra_terms or {}).items():
            if category not in compiled:
                from companion.errors import ConfigError

                raise ConfigError(f"safety.extra_terms: unknown category '{category}'; known: {', '.join(compiled)}")
            compiled[category] += [re.compile(rf"\b{re.escape(_plain(t))}\b") for t in terms if _plain(t)]
        compiled["parent_deny"] = [re.compile(rf"\b{re.escape(_plain(t))}\b") for t in (deny_topics or []) if _plain(t)]
        return Lexicon({c: tuple(ps) for c, ps in compiled.items()}, re.compile("|".join(rf"\b{b}\b" for b in BENIGN)))

    def without_benign(self, text: str) -> str:
        """``text`` normalised, its benign phrases taken out (what the patterns are matched against)."""
        from companion.safety.normalize import normalize

        return self.benign.sub(" ", normalize(text))

    def match(self, text: str, categories: tuple[str, ...] = PRECEDENCE) -> list[str]:
        from companion.safety.normalize import normalize

        plain = self.without_benign(text)
        leet = self.benign.sub(" ", normalize(text, leet=True))
        hits = []
        for category in categories:
            if any(p.search(plain) or p.search(leet) for p in self.patterns.get(category, ())):
                hits.append(category)
        return hits


def _plain(term: str) -> str:
    from companion.safety.normalize import normalize

    return normalize(term)
