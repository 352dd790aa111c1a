"""A text conversation with the language model: the core that voice, memory and safety wrap.

``Conversation.reply`` is what ``companion chat`` runs for every line; later
stages (ASR before it, TTS after it) call the same path.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

from companion.config import CompanionConfig
from companion.errors import CompanionError
from companion.llm.generate import GenerationResult, Generator, TokenEvent
from companion.llm.tokenizer import ChatMessage
from companion.models.cache import ModelCache
from companion.paths import models_cache_dir

_CHILD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")


@dataclass(frozen=True)
class ReplyTimings:
    llm_first_token_ms: float | None
    llm_total_ms: float


@dataclass(frozen=True)
class ChatReply:
    """One exchange: what the child said and what the robot answered."""

    child: str
    heard: str
    reply: str
    timings: ReplyTimings
    stop_reason: str
    prompt_tokens: int
    cached_tokens: int
    reply_tokens: int

    def to_json(self) -> dict:
        return {"child": self.child, "heard": self.heard, "reply": self.reply, "timings": asdict(self.timings),
                "llm": {"stop_reason": self.stop_reason, "prompt_tokens": self.prompt_tokens,
                        "cached_tokens": self.cached_tokens, "reply_tokens": self.reply_tokens}}


def check_child_name(name: str) -> str:
    if not _CHILD_NAME.match(name):
        raise CompanionError(
            f"child name {name!r} must be 1-40 letters, digits, spaces, '.', '_' or '-'", code="CHILD_NAME_INVALID"
        )
    return name


def load_generator(config: CompanionConfig, cache: ModelCache | None = None) -> Generator:
    """The configured language model from the model cache, with the persona's prompt pre-computed."""
    cache = cache or ModelCache(models_cache_dir())
    prepared = cache.get(config.llm.model)
    generator = Generator(prepared.path / "onnx", config.llm.runtime())
    generator.warm([ChatMessage("system", config.persona.render())])
    return generator


class Conversation:
    """One child's conversation with the robot: bounded history, one reply at a time."""

    def __init__(self, generator: Generator, config: CompanionConfig, child: str) -> None:
        self.generator = generator
        self.config = config
        self.child = check_child_name(child)
        self._system = ChatMessage("system", config.persona.render())
        self._history: deque[ChatMessage] = deque(maxlen=2 * config.llm.history_turns)

    def prompt(self, heard: str) -> list[int]:
        messages = [self._system, *self._history, ChatMessage("user", heard)]
        return self.generator.tokenizer.encode_chat(messages)

    async def stream(self, heard: str) -> AsyncIterator[TokenEvent | GenerationResult]:
        """The reply as it is generated (tokens, then the result). Closing it early cancels the model."""
        agen = self.generator.stream(self.prompt(heard), self.config.llm.sampling())
        try:
            async for item in agen:
                yield item
        finally:
            await agen.aclose()

    def remember(self, heard: str, said: str) -> None:
        """Add an exchange to the history; ``said`` is what was actually spoken (cut short on barge-in)."""
        self._history.append(ChatMessage("user", heard))
        self._history.append(ChatMessage("assistant", said))

    async def reply(self, heard: str, on_token=None) -> ChatReply:
        started = time.perf_counter()
        result: GenerationResult | None = None
        async for item in self.stream(heard):
            if isinstance(item, TokenEvent):
                if on_token is not None:
                    on_token(item)
            else:
                result = item
        assert result is not None
        text = result.text.strip()
        self.remember(heard, text)
        first = None if result.first_token_s is None else round(result.first_token_s * 1000, 1)
        return ChatReply(
            child=self.child, heard=heard, reply=text,
            timings=ReplyTimings(llm_first_token_ms=first, llm_total_ms=round((time.perf_counter() - started) * 1000, 1)),
            stop_reason=result.stop_reason, prompt_tokens=result.prompt_tokens,
            cached_tokens=result.cached_tokens, reply_tokens=len(result.token_ids),
        )


class TurnLog:
    """Append-only record of replies per child (``<data>/children/<child>/turns.jsonl``).

    Each line is written whole and fsynced, so a crash loses at most the reply in flight.
    """

    def __init__(self, data_dir: Path, child: str) -> None:
        self.path = data_dir / "children" / check_child_name(child) / "turns.jsonl"

    def append(self, reply: ChatReply) -> None:
        self.append_json(reply.to_json())

    def append_json(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}, ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
