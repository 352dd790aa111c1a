"""The one place a reply's words pass before they are spoken: clauses, the word cap, the output check.

Every path that speaks (the voice loop, ``companion chat``, the Wyoming handler later)
turns a ``TurnPlan`` into ``ReplyChunk``s with ``reply_chunks``; nothing else cuts,
caps or checks a reply.
"""

from __future__ import annotations

import asyncio
import re

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from companion.brain.claims import ASKS_ABOUT_ROBOT, LINES as ROBOT_LINES, YES_NO, checks_claims, robot_owns
from companion.brain.echo import ECHO_MIN_WORDS, ECHO_SHARE, content_words, echo_share
from companion.brain.plan import TurnPlan
from companion.brain.prompt import looks_like_question
from companion.llm.generate import Gate, GenerationResult, TokenEvent
from companion.llm.sampling import SamplingParams
from companion.persona import cap_words
from companion.safety.check import SafetyVerdict
from companion.tts.clauses import ClauseSplitter, ends_sentence


#: A first sentence held this long without ending is spoken: the child does not wait for a run-on.
HOLD_MAX_WORDS = 12

#: A code block: the coder model's habit. After "That's great! If you have any more questions, feel free to ask.",
#: to a child's "yeah", the 1.5B went on "```python # Define a simple function to greet the child ...". The reply
#: ends where the code begins (speakable() would drop a block only within one clause; the next clauses are
#: code read out as words).
_CODE = re.compile(r"```|~~~")


def cap_margin(max_words: int) -> int:
    """Words past the cap allowed to finish a sentence already begun (a quarter of the cap, at least 6)."""
    return max(6, max_words // 4)


@dataclass(frozen=True)
class ReplyChunk:
    """One clause of a reply, checked and ready to be synthesised."""

    text: str
    #: Position in the reply (0 first).
    index: int
    #: "model", "line" (a fixed line of the plan), "guard" (the redirect that replaced an unsafe clause) or
    #: "robot" (the reviewed line that replaced the model's claim to a pet or a family: brain/claims.py).
    source: str
    #: The output check's verdict when ``source == "guard"``.
    blocked: SafetyVerdict | None = None


class LanguageModel(Protocol):
    """The model stage: tokens for a prompt, then the result; closing the stream stops the model.

    A model that answers for the plan rather than for its prompt (a family server's brain over Wyoming,
    wyoming/remote.py) has ``stream_plan(plan, params, gate)`` instead; its text passes the same guard."""

    def stream(self, prompt_ids: Sequence[int], params: SamplingParams, gate: Gate | None = None,
               avoid: Sequence[Sequence[int]] = ()) -> AsyncIterator[TokenEvent | GenerationResult]: ...


class OutputGuard:
    """Cuts the model's text into clauses and lets through what may be said.

    A clause that fails the output check is never spoken: it is replaced by the safety
    layer's redirect and the rest of the reply is dropped. The persona's word cap ends the
    reply at a sentence's end: the reply stops before a clause that would pass the cap when what
    was said ends a sentence; a sentence already begun is finished within ``cap_margin`` more
    words, and only one that runs on past even that is cut, at its last sentence end or word that
    fits. Clauses already spoken can't be taken back, so this is decided clause by clause.

    No parroting: when the child told something (not a question), a first sentence that says their
    words back ("My best friend is moving away." -> "It's okay that your friend is moving away.")
    is not spoken; the reply starts with its next sentence. A first clause that repeats any of the
    child's words is held until its sentence ends (at most ``HOLD_MAX_WORDS``): it cannot tell yet
    ("It's okay that your friend is" repeats one word of four). One that repeats none ("Oh no, that
    sounds sad,") is spoken at once, so a reply of its own waits for nothing. Only when the reply has
    nothing else is a dropped sentence said after all.

    No pets or family of its own (``brain/claims.py``): a clause in which the robot claims one ("I have a
    puppy named Biscuit") is replaced by a reviewed line and the reply ends there. When the child asked the
    robot about itself, a first "Yes," is held until the next clause: "Yes, I'm a robot, so I don't have a
    pet" would contradict itself.
    """

    def __init__(self, plan: TurnPlan) -> None:
        self._plan = plan
        self._splitter = ClauseSplitter()
        self._words = 0
        self._index = 0
        #: What was passed so far stops mid-sentence (a clause cut at a comma).
        self._open = False
        #: No more chunks will come (capped or blocked).
        self.done = False
        #: The verdict that stopped the reply, if a clause failed the check.
        self.blocked: SafetyVerdict | None = None
        said = content_words(plan.heard)
        #: The child's words while the first sentence may still be dropped as an echo of them.
        self._echo_of = said if (plan.line is None and len(said) >= ECHO_MIN_WORDS
                                 and not looks_like_question(plan.heard)) else None
        self._held: list[str] = []
        #: The first sentence, when it was dropped as an echo.
        self._dropped: str | None = None
        #: Every clause of the model's text checked so far (spoken, held or dropped).
        self._checked = ""
        self._claims = plan.line is None and checks_claims(plan.heard)
        #: A first "Yes," held while the child asked about the robot (see the class's docstring).
        self._hold_yes = self._claims and bool(ASKS_ABOUT_ROBOT.search(plan.heard))
        self._yes: list[str] = []

    def push(self, text: str) -> list[ReplyChunk]:
        return self._pass(self._splitter.push(text))

    async def apush(self, text: str) -> list[ReplyChunk]:
        """``push`` with the checks off the event loop (the classifier is an encoder pass per clause)."""
        pieces = self._splitter.push(text)
        return await asyncio.to_thread(self._pass, pieces) if pieces else []

    async def aflush(self) -> list[ReplyChunk]:
        return await asyncio.to_thread(self.flush)

    def flush(self) -> list[ReplyChunk]:
        return self._pass(self._splitter.flush()) + self._finish()

    def _finish(self) -> list[ReplyChunk]:
        """The end of the model's text: what was held back is said now."""
        out: list[ReplyChunk] = []
        if self._yes and not self.done:  # the reply was only "Yes!"
            yes, self._yes = self._yes, []
            out += self._speak(self._first_sentence(" ".join(yes)))
        if self._held:  # the reply ended inside its first sentence: that is all it has to say
            held, self._held, self._echo_of = self._held, [], None
            out += self._speak(held)
        if self._index == 0 and self._dropped is not None and not self.done:
            # An echo is still better than silence: the reply had nothing else.
            text, self._dropped = self._dropped, None
            out += self._speak([text])
        return out

    def _chunk(self, text: str, source: str, blocked: SafetyVerdict | None = None) -> ReplyChunk:
        chunk = ReplyChunk(text, self._index, source, blocked)
        self._index += 1
        return chunk

    def _pass(self, pieces: list[str]) -> list[ReplyChunk]:
        out: list[ReplyChunk] = []
        for piece in pieces:
            if self.done:
                break
            if (code := _CODE.search(piece)) is not None:  # the reply ends before the code
                before = piece[:code.start()].strip()
                out += self._pass([before] if before else [])
                if not self.done:
                    out += self._finish()
                self.done = True
                break
            # The clause, and the model's reply so far as a whole: instructions cut into harmless-looking
            # clauses are still instructions.
            verdict = self._plan.guard.check_output(piece, so_far=self._checked, heard=self._plan.heard)
            self._checked = f"{self._checked} {piece}".strip()
            if verdict.action != "answer":
                self.done, self.blocked = True, verdict
                out.append(self._chunk(self._plan.guard.reply(verdict, self._plan.heard), "guard", verdict))
                break
            if self._claims and (kind := robot_owns(piece)) is not None:
                self._yes, self.done = [], True
                out.append(self._chunk(ROBOT_LINES[kind], "robot"))
                break
            if self._hold_yes and self._index == 0 and YES_NO.match(piece):
                self._yes.append(piece)
                continue
            if self._yes:
                piece, self._yes = " ".join([*self._yes, piece]), []
            out += self._speak(self._first_sentence(piece))
        return out

    def _first_sentence(self, piece: str) -> list[str]:
        """What may be spoken of ``piece`` now, as far as echoes go (see the class's docstring)."""
        if self._echo_of is None:
            return [piece]
        held = [*self._held, piece]
        share = echo_share(self._echo_of, " ".join(held))
        if ends_sentence(piece):
            self._held, self._echo_of = [], None
            if share >= ECHO_SHARE:
                self._dropped = " ".join(held)
                return []
            return held
        if (self._held or share > 0) and len(" ".join(held).split()) < HOLD_MAX_WORDS:
            self._held = held
            return []
        self._held, self._echo_of = [], None  # its own words, or a run-on: said, and the rest of it too
        return held

    def _speak(self, pieces: list[str]) -> list[ReplyChunk]:
        """``pieces`` (checked) as chunks, within the word cap."""
        out: list[ReplyChunk] = []
        for piece in pieces:
            if self.done:
                break
            n = len(piece.split())
            cap = self._plan.max_words
            if self._words + n > cap:
                if self._words and not self._open:
                    self.done = True  # the reply so far ends a sentence: stop here
                    break
                room = cap + cap_margin(cap) - self._words if self._words else cap
                if n > room:
                    out.append(self._chunk(cap_words(piece, room), "model"))
                    self.done = True
                    break
            self._words += n
            self._open = not ends_sentence(piece)
            out.append(self._chunk(piece, "model"))
            if self._words >= cap and not self._open:
                self.done = True
                break
        return out

    def line(self, text: str) -> list[ReplyChunk]:
        """A fixed line of the plan (reviewed text): cut into clauses, not capped or checked."""
        splitter = ClauseSplitter()
        self.done = True
        return [self._chunk(piece, "line") for piece in splitter.push(text) + splitter.flush()]


async def reply_chunks(plan: TurnPlan, model: LanguageModel, params: SamplingParams, *, gate: Gate | None = None,
                       observe: Callable[[TokenEvent | GenerationResult], None] | None = None,
                       ) -> AsyncIterator[ReplyChunk]:
    """The reply to ``plan`` as checked clauses. Closing it early stops the model within one token.

    ``observe`` sees every token and the result (timings, token counts); it decides nothing.
    """
    guard = OutputGuard(plan)
    if plan.reply_scale != 1.0:
        params = replace(params, max_new_tokens=max(1, round(params.max_new_tokens * plan.reply_scale)))
    if plan.ask_within != params.ask_within:
        params = replace(params, ask_within=plan.ask_within)
    if plan.line is not None:
        for chunk in guard.line(plan.line):
            yield chunk
        return
    stream_plan = getattr(model, "stream_plan", None)
    stream = stream_plan(plan, params, gate) if stream_plan is not None else \
        model.stream(plan.prompt, params, gate, plan.avoid)
    try:
        async for item in stream:
            if observe is not None:
                observe(item)
            if isinstance(item, TokenEvent):
                for chunk in await guard.apush(item.text):
                    yield chunk
                if guard.done:
                    break
        if not guard.done:
            for chunk in await guard.aflush():
                yield chunk
    finally:
        await stream.aclose()
