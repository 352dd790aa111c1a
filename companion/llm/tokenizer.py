"""Tokenizer and chat template of an exported model, without transformers.

The template is the model's own (``chat_template.jinja`` or the one inside
``tokenizer_config.json``), rendered with jinja2 in a sandbox the way
transformers renders it, so any chat model exported by ``companion.llm.export``
gets its correct prompt format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from companion.errors import MODEL_LOAD_FAILED, ModelError

#: Token texts that end an assistant turn in common chat models.
_END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>")
#: Text that ends a sentence when it comes next (one token each in most vocabularies; "..." trails off).
_SENTENCE_END = (".", "?", "!", "?!", "!!", "!!!", "??", ".\n", "?\n", "!\n")


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _as_list(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


class ChatTokenizer:
    """Encode/decode text and render conversations for one exported model folder."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as err:  # noqa: BLE001 - a broken tokenizer file is a model load error
            raise ModelError(f"cannot load tokenizer from {model_dir}: {err}", code=MODEL_LOAD_FAILED) from err
        config = _read_json(model_dir / "tokenizer_config.json")
        template_file = model_dir / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else config.get("chat_template")
        if not template:
            raise ModelError(f"{model_dir} has no chat template: not a chat model", code=MODEL_LOAD_FAILED)
        self._template = _compile(template)
        self._special_texts = tuple(
            tok.content for tok in self._tok.get_added_tokens_decoder().values() if tok.special
        )
        stop: set[int] = set()
        stop.update(_as_list(_read_json(model_dir / "generation_config.json").get("eos_token_id")))
        stop.update(_as_list(config.get("eos_token_id")))
        for text in _END_OF_TURN:
            tid = self._tok.token_to_id(text)
            if tid is not None:
                stop.add(tid)
        if not stop:
            raise ModelError(f"{model_dir}: no end-of-turn token found", code=MODEL_LOAD_FAILED)
        self.stop_token_ids: frozenset[int] = frozenset(stop)
        #: Tokens that end what a message says: its end-of-turn token, or a full stop, ! or ? (``Generator.ends_here``).
        self.sentence_end_ids: frozenset[int] = frozenset(stop) | frozenset(
            ids[0] for ids in (self._tok.encode(mark, add_special_tokens=False).ids for mark in _SENTENCE_END)
            if len(ids) == 1)
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def strip_special(self, text: str) -> str:
        """Remove control-token text so what a child says can never act as a template token."""
        for special in self._special_texts:
            text = text.replace(special, "")
        return text

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        safe = [{"role": m.role, "content": self.strip_special(m.content)} for m in messages]
        return self._template.render(messages=safe, add_generation_prompt=add_generation_prompt, tools=None,
                                     bos_token="", eos_token="")

    def encode_chat(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> list[int]:
        return self.encode(self.render(messages, add_generation_prompt=add_generation_prompt))

    def encode_open(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt up to the end of the last message's words, left open: what a prompt for the same
        messages with more words in the last one starts with (the child is still talking).

        Cut at a word's end, the tokens are those of the longer prompt: the pre-tokenizer starts a new
        token at the next word's space."""
        mark = "\u2063\u2063"  # invisible separators: text no template adds and no child says
        last = messages[-1]
        text = self.render([*messages[:-1], ChatMessage(last.role, last.content + mark)],
                           add_generation_prompt=False)
        return self.encode(text[:text.rindex(mark)])


def _compile(template: str):
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


class StreamDecoder:
    """Turns a growing list of token ids into text deltas without splitting a UTF-8 character."""

    def __init__(self, tokenizer: ChatTokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._emitted = ""

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
            return ""
        delta = text[len(self._emitted):]
        self._emitted = text
        return delta

    @property
    def text(self) -> str:
        return self._emitted
