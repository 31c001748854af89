"""A fake OpenAI-compatible (and Anthropic Messages) upstream for tests, demos and benchmarks.

Run it: ``python -m llm.fake_upstream --port 8900 [--host 127.0.0.1] [--seed 0]``, or in-process with
``start_in_thread()`` / ``FakeUpstream``. ``create_app(seed)`` returns the aiohttp application.

Routes (each also without the ``/v1`` prefix):
  POST /v1/chat/completions   JSON, or SSE with ``"stream": true`` (+ a usage chunk on include_usage)
  POST /v1/embeddings         float or base64 (what the openai SDK asks for by default)
  GET  /v1/models             defaults + configured + seen model names
  POST /v1/messages           Anthropic Messages API, JSON or SSE
  POST /v1/responses          OpenAI Responses API, JSON or the typed SSE events (function tools, text.format)
  POST /openai/deployments/{deployment}/chat/completions|embeddings   Azure-style paths
  GET  /health
Control, for tests:
  POST /_fake/models  {"<model>": {knob: value}}  sets (replaces) the behaviour of those models;
                      "<model>" is the name as sent, or its base name (before "@"), or "*" for every model
  GET  /_fake/models, DELETE /_fake/models (clear)
  GET  /_fake/stats   {"requests": {"<model>": n}, "last": {"<model>": <last request body>}}
  POST /_fake/reset   clears stats, counters and configs

Behaviour knobs, from three sources; precedence: control config > ``X-Fake-<Knob>`` headers
(``X-Fake-Latency-Ms: 200``) > model-name params (``fast@tokens=5,latency_ms=20``) > defaults:
  latency_ms=0      delay before the response (stream: before the headers)
  ttft_ms           stream: delay before the first chunk (default: latency_ms)
  tps=0             stream: tokens per second (0 = as fast as possible)
  tokens=16         completion length; capped by max_tokens, which makes finish_reason "length"
  fail_rate=0       probability (0..1) that a request fails; deterministic for a seed, model and request index
  status            HTTP status of a failure (default 500). Given alone (no fail_rate/fail_first), every
                    request fails with it; a 401 quotes the API key it received, as some providers do
  fail_first=0      the first N requests of the model fail, later ones succeed (counter per model name)
  retry_after       seconds, sent as Retry-After on 429/503/529 failures
  hang=0            1: never answer (the connection stays open until the client gives up)
  hang_after        stream: hang after N chunks (0: headers only); a JSON request then hangs too
  error_after       stream: after N chunks send an in-stream error event and end the stream
  garbage=0         1: 200 with a truncated, non-JSON body (stream: one good chunk then a broken one);
                    on /chat/completions also 2: 200 with an HTML page (a proxy's error page), stream too;
                    3: 200 with JSON of another API's shape (stream: chunks of that shape, then [DONE]);
                    4: stream: ``data:`` lines that are plain text, not JSON, from the first one (else as 1)
  truncate_after    stream: the connection is dropped after N chunks (no finish_reason, no [DONE]); a
                    /chat/completions JSON answer is cut off halfway through its announced length
  usage=1           0: no usage in responses (nor in the include_usage chunk)
  dim=64            embedding size (the request's "dimensions" wins)
  tool=1            0: ignore tools
  content_filter=0  1: finish_reason "content_filter" (Anthropic: stop_reason "refusal") after half the
                    text; 2: 400 with code "content_filter"
  stream_options=1  0: reject requests carrying stream_options with a 400, as some servers do
  echo=0            1: answer with the last user message's words (up to ``tokens`` of them), e.g. to make
                    a classifier model answer a chosen category name

Output is deterministic: the words depend on (seed, base model name, last user message) only, and each
word is a single token in cl100k_base and o200k_base, so completion_tokens is the real count. The
reported ``model`` is the name exactly as requested.

What a client asks is honoured, as the real APIs do (and checked as they check it, with their 400s):
  response_format   json_object: ``{"answer": <words>}``; json_schema: a value valid against the schema
                    (nested objects, arrays, enums, $defs...), drawn from the seed and prompt; streamed a
                    token per chunk; cut by max_tokens like any answer (finish_reason "length"); with
                    ``strict: true`` an object that is not closed or does not require all its properties is
                    a 400 ``invalid_json_schema``, as OpenAI's
  n                 n choices, each its own index; streamed side by side
  logprobs          ``logprobs.content`` with ``top_logprobs`` alternatives, in JSON and in each chunk
  seed              varies the words; the same seed and prompt give the same answer (``system_fingerprint``)
  tools             arguments / input valid against the tool's schema (placeholders: "fake", 1, true, the
                    first enum value); a tool result as the last message is answered in words unless the
                    tool_choice forces a call (OpenAI "required" or a name, Anthropic "any" or "tool")
  thinking          Anthropic ``{"type": "enabled", "budget_tokens": N}`` (or ``adaptive``): a signed
                    ``thinking`` block first (``thinking_delta``s then a ``signature_delta`` when streamed;
                    ``display: "omitted"``: no text); a thinking block sent back must carry the fake's own
                    signature
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import TracebackType
from typing import Any, Final

from aiohttp import web

from .tokens import count_message_tokens, count_tokens, token_bytes

__all__ = [
    "DEFAULT_MODELS",
    "KNOBS",
    "VOCABULARY",
    "Behaviour",
    "FakeUpstream",
    "create_app",
    "main",
    "start_in_thread",
]

DEFAULT_MODELS: Final = ("demo-fast", "demo-smart", "demo-embed")

# Each word is one token in cl100k_base and o200k_base, with and without a leading space (a test checks).
VOCABULARY: Final = (
    "the", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as", "at", "by", "from",
    "time", "people", "world", "water", "light", "point", "form", "line", "turn", "move", "play", "air",
    "page", "letter", "answer", "study", "plant", "food", "sun", "state", "city", "tree", "farm", "story",
    "sea", "night", "north", "open", "white", "walk", "paper", "group", "music", "river", "book", "science",
    "room", "friend", "idea", "fish", "horse", "color", "wood", "bird", "song", "door", "ship",
)  # fmt: skip

_INT_KNOBS: Final = frozenset(
    {"tokens", "status", "fail_first", "hang", "hang_after", "error_after", "garbage", "usage", "dim", "tool",
     "content_filter", "stream_options", "echo", "truncate_after"}
)  # fmt: skip
_FLOAT_KNOBS: Final = frozenset({"latency_ms", "ttft_ms", "tps", "fail_rate", "retry_after"})
KNOBS: Final = _INT_KNOBS | _FLOAT_KNOBS
_FLAGS: Final = frozenset({"hang", "usage", "tool", "stream_options", "echo"})

_log = logging.getLogger(__name__)

Knobs = dict[str, float]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the fake answers one request (see the module docstring for each knob)."""

    latency_ms: float = 0.0
    ttft_ms: float | None = None
    tps: float = 0.0
    tokens: int = 16
    fail_rate: float = 0.0
    status: int | None = None
    fail_first: int = 0
    retry_after: float | None = None
    hang: int = 0
    hang_after: int | None = None
    error_after: int | None = None
    garbage: int = 0
    truncate_after: int | None = None
    usage: int = 1
    dim: int = 64
    tool: int = 1
    content_filter: int = 0
    stream_options: int = 1
    echo: int = 0

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, float]) -> Behaviour:
        if not knobs:
            return _DEFAULT_BEHAVIOUR
        values: dict[str, Any] = {k: (int(v) if k in _INT_KNOBS else float(v)) for k, v in knobs.items()}
        return cls(**values)


_DEFAULT_BEHAVIOUR: Final = Behaviour()


class KnobError(ValueError):
    """A knob name or value the fake does not understand (answered with a 400)."""


def parse_knob(name: str, raw: object) -> float:
    """Validate one knob value from a header, a model name or the control API."""
    if name not in KNOBS:
        raise KnobError(f"unknown fake knob {name!r} (known: {', '.join(sorted(KNOBS))})")
    value: float
    if isinstance(raw, bool | int | float):
        value = float(raw)
    elif isinstance(raw, str) and raw.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
        value = 1.0 if raw.strip().lower() in ("true", "yes", "on") else 0.0
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise KnobError(f"fake knob {name}: {raw!r} is not a number") from None
    else:
        raise KnobError(f"fake knob {name}: {raw!r} is not a number")
    if value != value or value < 0:  # NaN or negative
        raise KnobError(f"fake knob {name}: {raw!r} must be >= 0")
    if name in _INT_KNOBS and value != int(value):
        raise KnobError(f"fake knob {name}: {raw!r} must be an integer")
    if name in _FLAGS and value not in (0, 1):
        raise KnobError(f"fake knob {name}: {raw!r} must be 0 or 1")
    if name == "fail_rate" and value > 1:
        raise KnobError(f"fake knob fail_rate: {raw!r} must be between 0 and 1")
    if name == "status" and not 100 <= value <= 599:
        raise KnobError(f"fake knob status: {raw!r} is not an HTTP status")
    if name == "garbage" and value not in (0, 1, 2, 3, 4):
        raise KnobError(f"fake knob garbage: {raw!r} must be 0, 1, 2, 3 or 4")
    if name == "content_filter" and value not in (0, 1, 2):
        raise KnobError(f"fake knob content_filter: {raw!r} must be 0, 1 or 2")
    if name == "dim" and not 1 <= value <= 16384:
        raise KnobError(f"fake knob dim: {raw!r} must be between 1 and 16384")
    if name == "tokens" and value > 1_000_000:
        raise KnobError(f"fake knob tokens: {raw!r} is too large")
    return value


def parse_knobs(knobs: Mapping[str, object]) -> Knobs:
    """Validate a {knob: value} mapping (control API); ``None`` values are dropped (= default)."""
    return {name: parse_knob(name, raw) for name, raw in knobs.items() if raw is not None}


@lru_cache(maxsize=4096)
def _split_model_name(model: str) -> tuple[str, tuple[tuple[str, float], ...]]:
    """``"fast@tokens=5,latency_ms=20"`` -> ``("fast", (("tokens", 5.0), ("latency_ms", 20.0)))``."""
    base, sep, params = model.partition("@")
    if not sep:
        return model, ()
    knobs: list[tuple[str, float]] = []
    for item in params.split(","):
        if not item.strip():
            continue
        name, eq, raw = item.partition("=")
        if not eq:
            raise KnobError(f"model parameter {item!r} is not knob=value")
        name = name.strip().lower().replace("-", "_")
        knobs.append((name, parse_knob(name, raw.strip())))
    return base, tuple(knobs)


def _header_knobs(headers: Mapping[str, str]) -> Knobs:
    knobs: Knobs = {}
    for key, raw in headers.items():
        if key[:7].lower() == "x-fake-":
            name = key[7:].lower().replace("-", "_")
            knobs[name] = parse_knob(name, raw)
    return knobs


# --------------------------------------------------------------------------------------------------------
# Deterministic content


@lru_cache(maxsize=8192)
def _words(seed: int, base_model: str, prompt: str, count: int) -> tuple[str, ...]:
    # random.Random(str) seeds through SHA-512: stable across processes, unlike hash().
    rng = random.Random(f"{seed}\x00{base_model}\x00{prompt}")
    return tuple(rng.choice(VOCABULARY) for _ in range(count))


def _text_pieces(words: tuple[str, ...]) -> list[str]:
    """One piece per token: the first word bare, the others with a leading space."""
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


@lru_cache(maxsize=8192)
def _count_cached(text: str, model: str) -> int:
    return count_tokens(text, model)


@lru_cache(maxsize=8192)
def _count_messages_cached(messages: tuple[tuple[tuple[str, Any], ...], ...], model: str) -> int:
    return count_message_tokens([dict(m) for m in messages], model)


def _prompt_tokens(messages: list[Any], model: str, system: str = "") -> int:
    extra = _count_cached(system, model) if system else 0
    try:
        key = tuple(tuple(m.items()) for m in messages)
        return _count_messages_cached(key, model) + extra
    except TypeError:  # unhashable values (content parts, tool_calls): count without the cache
        return count_message_tokens(messages, model) + extra


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _fill_schema(schema: Any) -> dict[str, Any]:
    """Arguments for a tool: every required property filled with a placeholder of its type."""
    if not isinstance(schema, dict):
        return {}
    args = _SchemaFaker(schema, None).value(schema)
    return args if isinstance(args, dict) else {}


_FORMATS: Final = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "fake@example.com",
    "uri": "https://example.com/fake",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_MAX_DEPTH: Final = 8  # past it, recursive schemas take their shortest branch (null, an empty array)


def _schema_int(schema: Mapping[str, Any], name: str, default: int) -> int:
    value = schema.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


class _SchemaFaker:
    """A value valid against a JSON schema (the subset structured outputs and tools use: types, objects,
    arrays, enum, const, anyOf/oneOf/allOf, $ref to $defs, string formats, numeric bounds).

    With an ``rng`` the values are drawn from it (a structured answer, all properties filled); without one
    they are placeholders (tool arguments, required properties only: "fake", 1, true, the first enum value;
    an object property that names no properties is null, as the fake always answered).
    """

    def __init__(self, root: Mapping[str, Any], rng: random.Random | None) -> None:
        self.root = root
        self.rng = rng

    def _resolve(self, schema: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
            ref = schema["$ref"]
            target: Any = self.root
            for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else ():
                target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **siblings} if isinstance(target, dict) else siblings
            seen += 1
        return schema if isinstance(schema, dict) else {}

    def _choose(self, options: list[Any]) -> Any:
        return options[0] if self.rng is None else self.rng.choice(options)

    def value(self, schema: Any, depth: int = 0) -> Any:
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._choose(schema["enum"])
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self._branch([self._resolve(b) for b in branches], depth), depth + 1)
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged.update(self._resolve(part))
            return self.value(merged, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            kind = "null" if not kinds or (depth >= _MAX_DEPTH and "null" in kind) else kinds[0]
        if kind is None and isinstance(schema.get("properties"), dict):
            kind = "object"
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            return self._number(schema, kind == "integer")
        if kind == "boolean":
            return True if self.rng is None else self.rng.random() < 0.5
        return None  # "null", or no type: anything is valid

    def _branch(self, branches: list[dict[str, Any]], depth: int) -> dict[str, Any]:
        nulls = [b for b in branches if b.get("type") == "null"]
        others = [b for b in branches if b.get("type") != "null"] or branches
        if depth >= _MAX_DEPTH and nulls:
            return nulls[0]
        return others[0] if self.rng is None else self.rng.choice(others)

    def _object(self, schema: dict[str, Any], depth: int) -> Any:
        properties = schema.get("properties")
        if self.rng is None and depth > 0 and not properties:
            return None
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        required = [str(name) for name in required] if isinstance(required, list) else []
        names = required if self.rng is None else [*properties, *(n for n in required if n not in properties)]
        return {name: self.value(properties.get(name, {}), depth + 1) for name in names}

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = _schema_int(schema, "minItems", 0)
        high = _schema_int(schema, "maxItems", low + 3)
        # Fewer items the deeper: a recursive schema (a tree) stays small.
        spread = 3 if depth < 2 else 1 if depth < 4 else 0
        if depth >= _MAX_DEPTH or (self.rng is not None and not spread):
            count = low
        elif self.rng is None:
            count = max(low, min(1, high))
        else:
            count = self.rng.randint(max(low, min(1, high)), max(low, min(high, low + spread)))
        items = schema.get("items", {})
        return [self.value(items, depth + 1) for _ in range(count)]

    def _string(self, schema: dict[str, Any]) -> str:
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        if self.rng is None:
            text = "fake"
        else:
            text = " ".join(self.rng.choice(VOCABULARY) for _ in range(self.rng.randint(1, 3)))
        text = text.ljust(_schema_int(schema, "minLength", 0), "x")
        high = _schema_int(schema, "maxLength", -1)
        return text if high < 0 else text[:high]

    def _number(self, schema: dict[str, Any], integer: bool) -> int | float:
        def bound(name: str) -> float | None:
            value = schema.get(name)
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        low, high = bound("minimum"), bound("maximum")
        exclusive_low, exclusive_high = bound("exclusiveMinimum"), bound("exclusiveMaximum")
        step = 1 if integer else 0.01
        if exclusive_low is not None:
            low = max(low if low is not None else exclusive_low + step, exclusive_low + step)
        if exclusive_high is not None:
            high = min(high if high is not None else exclusive_high - step, exclusive_high - step)
        if low is None:
            low = min(1.0 if self.rng is None else 0.0, high if high is not None else 1.0)
        if high is None:
            high = max(low, 100.0)
        if integer:
            low_int, high_int = int(-(-low // 1)), int(high // 1)
            if self.rng is None:
                return max(low_int, min(1, high_int))
            return self.rng.randint(low_int, max(low_int, high_int))
        if self.rng is None:
            return 1 if low <= 1 <= high else low
        return round(self.rng.uniform(low, high), 2) if high - low >= 0.01 else low


def _tool_id(prefix: str, seed: int, base_model: str, prompt: str, name: str) -> str:
    digest = hashlib.blake2b(f"{seed}\x00{base_model}\x00{prompt}\x00{name}".encode(), digest_size=12)
    return prefix + digest.hexdigest()


@lru_cache(maxsize=8192)
def _embedding(base_model: str, text: str, dim: int) -> array[float]:
    raw = hashlib.shake_256(f"{base_model}\x00{text}".encode()).digest(4 * dim)
    ints = array("I")
    ints.frombytes(raw)
    values = [x / 2147483647.5 - 1.0 for x in ints]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return array("f", (v / norm for v in values))


# --------------------------------------------------------------------------------------------------------
# State


class _State:
    """Per-app state. Only touched from the event loop thread, so no locking is needed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.configs: dict[str, Knobs] = {}
        self.requests: dict[str, int] = {}
        self.last: dict[str, Any] = {}
        self.seen: dict[str, None] = dict.fromkeys(DEFAULT_MODELS)
        self.ids = 0
        self.closing = asyncio.Event()

    def reset(self) -> None:
        self.configs.clear()
        self.requests.clear()
        self.last.clear()
        self.seen = dict.fromkeys(DEFAULT_MODELS)
        self.ids = 0

    def behaviour(self, model: str, headers: Mapping[str, str]) -> tuple[str, Behaviour]:
        base, name_knobs = _split_model_name(model)
        header_knobs = _header_knobs(headers)
        if not name_knobs and not header_knobs and not self.configs:
            return base, _DEFAULT_BEHAVIOUR
        knobs: Knobs = dict(name_knobs)
        knobs.update(header_knobs)
        if self.configs:
            knobs.update(self.configs.get("*", {}))
            knobs.update(self.configs.get(model) or self.configs.get(base) or {})
        return base, Behaviour.from_knobs(knobs)

    def record(self, model: str, body: Any) -> int:
        """Count a request; returns its 0-based index for this model."""
        index = self.requests.get(model, 0)
        self.requests[model] = index + 1
        self.last[model] = body
        self.seen[model] = None
        self.ids += 1
        return index

    def should_fail(self, b: Behaviour, model: str, index: int) -> bool:
        if b.fail_first and index < b.fail_first:
            return True
        if b.fail_rate > 0:
            return random.Random(f"{self.seed}\x00{model}\x00{index}").random() < b.fail_rate
        # A status given on its own (without fail_rate / fail_first) means "always answer with it".
        return b.status is not None and b.status >= 400 and not b.fail_first


STATE: Final = web.AppKey("fake_upstream_state", _State)


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class _Closing(Exception):
    """The server is shutting down while a handler waits."""


# --------------------------------------------------------------------------------------------------------
# Responses


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=_dumps(obj), status=status, content_type="application/json", headers=headers)


_OPENAI_ERRORS: Final = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", "timeout"),
    409: ("conflict", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "service_unavailable"),
}
_ANTHROPIC_ERRORS: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _openai_error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> Any:
    kind, default_code = _OPENAI_ERRORS.get(
        status,
        (
            "server_error" if status >= 500 else "invalid_request_error",
            "server_error" if status >= 500 else "error",
        ),
    )
    return {"error": {"message": message, "type": kind, "code": code or default_code, "param": param}}


def _anthropic_error_body(status: int, message: str) -> Any:
    kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _retry_headers(b: Behaviour, status: int) -> dict[str, str] | None:
    if b.retry_after is None or status not in (429, 503, 529):
        return None
    value = b.retry_after
    return {"Retry-After": str(int(value)) if value == int(value) else str(value)}


def _error(
    flavour: str,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    if flavour == "anthropic":
        return _json(_anthropic_error_body(status, message), status, headers)
    return _json(_openai_error_body(status, message, code, param), status, headers)


def _failure(flavour: str, b: Behaviour, model: str, index: int, credential: str) -> web.Response:
    status = b.status if b.status is not None and b.status >= 400 else 500
    message = f"fake upstream: simulated {status} for model {model!r} (request #{index + 1})"
    if status == 401:
        # As some real upstreams do: quote the credential it refused (callers must never pass it on).
        message = f"Incorrect API key provided: {credential or '(none)'}. {message}"
    return _error(flavour, status, message, headers=_retry_headers(b, status))


def _credential(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return (
        header.removeprefix("Bearer ").strip()
        or request.headers.get("x-api-key", "")
        or request.headers.get("api-key", "")
    )


_GARBAGE_JSON: Final = b'{"id":"garbage","object":"chat.completion","choices":[{"index":0,"message":{"rol'
# What a proxy in front of a model server may answer with a 200 when the server behind it is down.
_GARBAGE_HTML: Final = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>\n"
)


# --------------------------------------------------------------------------------------------------------
# Waiting


async def _sleep(state: _State, seconds: float) -> None:
    """Sleep, but give up promptly when the server shuts down."""
    if seconds <= 0:
        return
    if seconds < 0.05:
        await asyncio.sleep(seconds)
    else:
        try:
            await asyncio.wait_for(state.closing.wait(), seconds)
        except TimeoutError:
            return
    if state.closing.is_set():
        raise _Closing


async def _hang(request: web.Request, state: _State) -> None:
    """Keep the connection open without answering until the client leaves or the server stops."""
    while not state.closing.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), 0.1)
    raise _Closing


def _gone() -> web.Response:
    # Nobody reads this: the client left, or the server is closing.
    return web.Response(status=499)


# --------------------------------------------------------------------------------------------------------
# Handlers


async def _read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        raise _BadRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.")
    return body


def _max_tokens(body: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _BadRequest(f"Invalid '{name}': expected a positive integer.", param=name)
        return value
    return None


def _is_function_tool(tool: Any) -> bool:
    function = tool.get("function") if isinstance(tool, dict) else None
    return isinstance(function, dict) and bool(function.get("name"))


def _openai_tool(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The tool to call (name, arguments) for an OpenAI request, or None."""
    tools = body.get("tools")
    if not tools:
        return None
    if not isinstance(tools, list) or not all(_is_function_tool(t) for t in tools):
        raise _BadRequest("Invalid 'tools': each tool needs a function with a name.", param="tools")
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if choice in (None, "auto") and isinstance(last, dict) and last.get("role") == "tool":
        return None  # the tool's result came back: a model answers it in words
    functions = [t["function"] for t in tools]
    chosen = functions[0]
    if isinstance(choice, dict):
        inner = choice.get("function")
        wanted = inner.get("name") if isinstance(inner, dict) else choice.get("name")
        match = [f for f in functions if f.get("name") == wanted]
        if not match:
            raise _BadRequest(f"Invalid 'tool_choice': no tool named {wanted!r}.", param="tool_choice")
        chosen = match[0]
    return str(chosen["name"]), _fill_schema(chosen.get("parameters"))


def _anthropic_tool(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    tools = body.get("tools")
    if not tools:
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("name") for t in tools):
        raise _BadRequest("tools: each tool needs a name")
    choice = body.get("tool_choice")
    chosen = tools[0]
    forced = isinstance(choice, dict) and choice.get("type") in ("any", "tool")
    if not forced and _answers_a_tool_result(body.get("messages")):
        return None  # the tool's result came back: a model answers it in words
    if isinstance(choice, dict):
        if choice.get("type") == "none":
            return None
        if choice.get("type") == "tool":
            match = [t for t in tools if t.get("name") == choice.get("name")]
            if not match:
                raise _BadRequest(f"tool_choice: no tool named {choice.get('name')!r}")
            chosen = match[0]
    return str(chosen["name"]), _fill_schema(chosen.get("input_schema"))


def _answers_a_tool_result(messages: Any) -> bool:
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) and last.get("role") == "user" else None
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


@dataclass(slots=True)
class _Plan:
    """What a chat request answers (one choice), independent of the wire format."""

    pieces: list[str]
    finish: str  # stop | length | tool_calls | content_filter
    tool: tuple[str, str, str] | None  # (id, name, arguments JSON)
    prompt_tokens: int
    completion_tokens: int
    thinking: list[str] = field(default_factory=list)  # Anthropic thinking text, one piece per token
    key: str = ""  # what the words were drawn from (the logprobs are drawn from it too)


# response_format: ("json_object", None) or ("json_schema", the schema); None is plain text.
_Format = tuple[str, Any] | None


def _plan(
    state: _State,
    b: Behaviour,
    base: str,
    messages: list[Any],
    max_tokens: int | None,
    tool: tuple[str, dict[str, Any]] | None,
    system: str = "",
    tool_prefix: str = "call_",
    *,
    variant: str = "",
    answer_format: _Format = None,
    thinking_budget: int | None = None,
) -> _Plan:
    """One choice; ``variant`` (the request's seed and the choice's index) makes choices differ."""
    prompt = _last_user_text(messages)
    key = prompt + variant
    prompt_tokens = _prompt_tokens(messages, base, system)
    thinking: list[str] = []
    if thinking_budget is not None:
        thinking = _text_pieces(_words(state.seed, base, "\x00thinking\x00" + key, min(b.tokens, thinking_budget)))
        if max_tokens is not None:
            max_tokens -= len(thinking)  # thinking counts against max_tokens (which exceeds the budget)
    if tool is not None and b.tool and not b.content_filter:
        name, args = tool
        arguments = _dumps(args)
        tool_id = _tool_id(tool_prefix, state.seed, base, key, name)
        tokens = _count_cached(name + arguments, base) + len(thinking)
        return _Plan([], "tool_calls", (tool_id, name, arguments), prompt_tokens, tokens, thinking, key)
    if answer_format is not None:
        pieces, finish = _json_pieces(_json_answer(state, b, base, key, answer_format), base), "stop"
        if max_tokens is not None and len(pieces) > max_tokens:
            pieces, finish = pieces[:max_tokens], "length"  # cut JSON, as a real model's: it does not parse
        if b.content_filter:
            pieces, finish = pieces[: len(pieces) // 2], "content_filter"
        tokens = _count_cached("".join(pieces), base) if pieces else 0
        return _Plan(pieces, finish, None, prompt_tokens, tokens + len(thinking), thinking, key)
    count = b.tokens
    finish = "stop"
    if max_tokens is not None and count > max_tokens:
        count, finish = max_tokens, "length"
    if b.content_filter:
        count, finish = count // 2, "content_filter"
    if b.echo:
        pieces = _text_pieces(tuple(prompt.split()[:count]))
        tokens = _count_cached("".join(pieces), base) if pieces else 0
        return _Plan(pieces, finish, None, prompt_tokens, tokens + len(thinking), thinking, key)
    pieces = _text_pieces(_words(state.seed, base, key, count))
    return _Plan(pieces, finish, None, prompt_tokens, len(pieces) + len(thinking), thinking, key)


def _json_answer(state: _State, b: Behaviour, base: str, key: str, answer_format: tuple[str, Any]) -> str:
    """JSON text: ``{"answer": <words>}`` for json_object, a value valid against the schema for json_schema."""
    kind, schema = answer_format
    if kind == "json_object":
        return json.dumps({"answer": " ".join(_words(state.seed, base, key, b.tokens))})
    rng = random.Random(f"{state.seed}\x00{base}\x00{key}\x00json_schema")
    return json.dumps(_SchemaFaker(schema, rng).value(schema), ensure_ascii=False)


def _json_pieces(text: str, base: str) -> list[str]:
    """``text`` in stream pieces of one token each, except where a character spans tokens (kept whole)."""
    pieces: list[str] = []
    pending = b""
    for token in token_bytes(text, base):
        pending += token
        try:
            pieces.append(pending.decode())
        except UnicodeDecodeError:
            continue
        pending = b""
    return pieces


def _logprobs(state: _State, base: str, key: str, pieces: list[str], top: int) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs.content``: each token with a log probability and ``top`` likelier alternatives,
    the token itself first (it was the likeliest), then vocabulary words, each less likely than the last."""
    rng = random.Random(f"{state.seed}\x00{base}\x00{key}\x00logprobs")
    entries: list[dict[str, Any]] = []
    for piece in pieces:
        logprob = -round(rng.random() * 2, 6)
        lead = " " if piece.startswith(" ") else ""
        others = [lead + w for w in rng.sample(VOCABULARY, top + 1) if lead + w != piece][: max(0, top - 1)]
        alternatives = [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}] if top else []
        for i, other in enumerate(others, 1):
            alternatives.append(
                {"token": other, "logprob": round(logprob - i - rng.random(), 6), "bytes": list(other.encode())}
            )
        entries.append(
            {"token": piece, "logprob": logprob, "bytes": list(piece.encode()), "top_logprobs": alternatives}
        )
    return entries


async def _gate(
    request: web.Request, state: _State, flavour: str, model: str, b: Behaviour, index: int, delay_ms: float
) -> web.Response | None:
    """Hang, wait and fail as the behaviour says; None means "go on and answer"."""
    if b.hang:
        await _hang(request, state)
    await _sleep(state, delay_ms / 1000)
    if state.should_fail(b, model, index):
        return _failure(flavour, b, model, index, _credential(request))
    if b.content_filter == 2:
        message = "The response was filtered due to the prompt triggering the content management policy."
        return _error(flavour, 400, message, code="content_filter", param="prompt")
    return None


async def _stream_out(
    request: web.Request,
    state: _State,
    b: Behaviour,
    pre_ms: float,
    events: list[bytes],
    token_events: frozenset[int],
    error_event: bytes,
) -> web.StreamResponse:
    """Send SSE ``events``, pacing them by ttft/tps and hanging or erroring where the behaviour says."""
    ttft_ms = b.latency_ms if b.ttft_ms is None else b.ttft_ms
    wait_first = max(0.0, ttft_ms - pre_ms) / 1000
    paced = b.tps or b.hang_after is not None or b.error_after is not None or b.truncate_after is not None
    if not wait_first and not paced:
        # The common, fast path: the whole stream in one write.
        return web.Response(
            body=b"".join(events), content_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    gap = 1.0 / b.tps if b.tps else 0.0
    try:
        await _sleep(state, wait_first)
        for i, event in enumerate(events):
            if b.hang_after is not None and i >= b.hang_after:
                await _hang(request, state)
            if b.truncate_after is not None and i >= b.truncate_after:
                _drop(request)  # without the end of the chunked body: the reader sees a cut stream
                return response
            if b.error_after is not None and i >= b.error_after:
                await response.write(error_event)
                break
            if gap and i > 0 and i in token_events:
                await _sleep(state, gap)
            await response.write(event)
        await response.write_eof()
    except (_Closing, ConnectionError):
        # The client left (or the server is stopping): drop the connection rather than end the stream
        # cleanly, so a reader never mistakes a cut stream for a complete one.
        _drop(request)
    return response


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


def _pre_ms(b: Behaviour) -> float:
    """Stream: the delay before the headers (the rest of the ttft is waited after them)."""
    return b.latency_ms if b.ttft_ms is None else min(b.latency_ms, b.ttft_ms)


def _guarded(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], flavour: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _BadRequest as exc:
            return _error(flavour, 400, exc.message, code=exc.code, param=exc.param)
        except KnobError as exc:
            return _error(flavour, 400, str(exc), code="fake_knob")
        except (_Closing, ConnectionError):
            return _gone()

    return wrapped


@dataclass(frozen=True, slots=True)
class _Sampling:
    """The OpenAI parameters that shape the choices: how many, from which seed, with which logprobs."""

    n: int = 1
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    answer_format: _Format = None

    def variant(self, index: int) -> str:
        # Choice 0 without a seed is the answer the fake always gave; a seed or a later choice varies it.
        if self.seed is None and index == 0:
            return ""
        return f"\x00seed={self.seed}\x00choice={index}"


def _integer(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequest(f"Invalid type for '{name}': expected an integer, but got {_dumps(value)[:40]}.", param=name)
    if not low <= value <= high:
        raise _BadRequest(
            f"Invalid '{name}': expected a value between {low} and {high}, but got {value} instead.", param=name
        )
    return value


def _sampling(body: Mapping[str, Any], messages: list[Any]) -> _Sampling:
    """``n``, ``seed``, ``logprobs``/``top_logprobs`` and ``response_format``, checked as OpenAI does."""
    n = _integer(body, "n", 1, 128) or 1
    seed = _integer(body, "seed", -(2**63), 2**63 - 1)
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _BadRequest("Invalid type for 'logprobs': expected a boolean.", param="logprobs")
    top = _integer(body, "top_logprobs", 0, 20)
    if top is not None and not logprobs:
        raise _BadRequest("Invalid 'top_logprobs': 'logprobs' must be true to use it.", param="top_logprobs")
    return _Sampling(n, seed, bool(logprobs), top or 0, _answer_format(body.get("response_format"), messages))


def _answer_format(response_format: Any, messages: list[Any]) -> _Format:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        if not any("json" in _dumps(m.get("content")).lower() for m in messages):
            raise _BadRequest(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                param="messages",
            )
        return ("json_object", None)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            message = "Missing required parameter: 'response_format.json_schema.name'."
            raise _BadRequest(message, param="response_format.json_schema.name")
        schema = spec.get("schema", {})
        if not isinstance(schema, dict):
            message = "Invalid type for 'response_format.json_schema.schema': expected an object."
            raise _BadRequest(message, param="response_format.json_schema.schema")
        if spec.get("strict") is True:
            problem = _strict_problem(schema, ())
            if problem is not None:
                message = f"Invalid schema for response_format {spec['name']!r}: {problem}"
                raise _BadRequest(message, param="response_format", code="invalid_json_schema")
        return ("json_schema", schema)
    message = f"Invalid value: {_dumps(kind)}. Supported values are: 'json_object', 'json_schema', and 'text'."
    raise _BadRequest(message, param="response_format.type")


@dataclass(slots=True)
class _Completion:
    """A chat completion's choices and what its JSON and its chunks both tell."""

    id: str
    created: int
    model: str
    plans: list[_Plan]
    logprobs: list[list[dict[str, Any]] | None] | None  # per choice (None: a tool call); None: not asked
    head: str = field(init=False)  # every chunk's beginning, up to its choices

    def __post_init__(self) -> None:
        self.head = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
            f'"model":{_dumps(self.model)},"system_fingerprint":"fp_fake","choices":'
        )

    @property
    def usage(self) -> dict[str, int]:
        prompt, completion = self.plans[0].prompt_tokens, sum(p.completion_tokens for p in self.plans)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def logprobs_of(self, index: int, start: int = 0, stop: int | None = None) -> Any:
        if self.logprobs is None:
            return None
        content = self.logprobs[index]
        return {"content": None if content is None else content[start:stop], "refusal": None}

    def as_json(self, with_usage: bool) -> dict[str, Any]:
        choices = []
        for i, p in enumerate(self.plans):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(p.pieces), "refusal": None}
            if p.tool is not None:
                tool_id, name, arguments = p.tool
                message["content"] = None
                message["tool_calls"] = [
                    {"id": tool_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                ]
            choices.append({"index": i, "message": message, "logprobs": self.logprobs_of(i), "finish_reason": p.finish})
        result: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if with_usage:
            result["usage"] = self.usage
        return result

    def chunk(self, delta: Any, finish: str | None = None, index: int = 0, logprobs: Any = None) -> bytes:
        # Spelt out rather than one json.dumps of the choice: this runs per token, and `make bench` feels it.
        logprobs_json = "null" if logprobs is None else _dumps(logprobs)
        finish_json = "null" if finish is None else f'"{finish}"'
        choice = (
            f'[{{"index":{index},"delta":{_dumps(delta)},"logprobs":{logprobs_json},"finish_reason":{finish_json}}}]'
        )
        return (self.head + choice + "}\n\n").encode()

    def choice_chunks(self, index: int) -> list[bytes]:
        p = self.plans[index]
        if p.tool is not None:
            tool_id, name, arguments = p.tool
            first = {"index": 0, "id": tool_id, "type": "function", "function": {"name": name, "arguments": ""}}
            half = len(arguments) // 2
            return [self.chunk({"role": "assistant", "content": None, "tool_calls": [first]}, None, index)] + [
                self.chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}, None, index)
                for part in (arguments[:half], arguments[half:])
            ]
        pieces = p.pieces or [""]
        first_delta = {"role": "assistant", "content": pieces[0], "refusal": None}
        chunks = [self.chunk(first_delta, None, index, self.logprobs_of(index, 0, 1))]
        for position, piece in enumerate(pieces[1:], 1):
            chunks.append(self.chunk({"content": piece}, None, index, self.logprobs_of(index, position, position + 1)))
        return chunks

    def chunks(self) -> tuple[list[bytes], set[int]]:
        """The choices' chunks, and which of them wait for the next token (tps). The choices take turns at
        each position, so n of them stream side by side (as OpenAI's do)."""
        streams = [self.choice_chunks(i) for i in range(len(self.plans))]
        events: list[bytes] = []
        token_events: set[int] = set()
        for position in range(max(len(c) for c in streams)):
            for i, chunks in enumerate(streams):
                if position < len(chunks):
                    if position > 0 and i == 0:
                        token_events.add(len(events))
                    events.append(chunks[position])
        return events, token_events


def _strict_problem(schema: Any, context: tuple[str, ...]) -> str | None:
    """What OpenAI's strict mode refuses in ``schema``, if anything: every object must close itself
    (``additionalProperties: false``) and require each of its properties. (Its other rules are not checked.)"""
    if not isinstance(schema, dict):
        return None
    where = f"In context={context!r}, "
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, dict):
        if schema.get("additionalProperties") is not False:
            return where + "'additionalProperties' is required to be supplied and to be false."
        names = list(properties) if isinstance(properties, dict) else []
        required = schema.get("required")
        missing = [name for name in names if not isinstance(required, list) or name not in required]
        if missing:
            return (
                where + "'required' is required to be supplied and to be an array including every key in "
                f"properties. Missing {missing[0]!r}."
            )
    children: list[tuple[tuple[str, ...], Any]] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            children += [((*context, key, name), child) for name, child in schema[key].items()]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list):
            children += [((*context, key, str(i)), child) for i, child in enumerate(schema[key])]
    if "items" in schema:
        children.append(((*context, "items"), schema["items"]))
    for child_context, child in children:
        problem = _strict_problem(child, child_context)
        if problem is not None:
            return problem
    return None


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _read_body(request)
    model = request.match_info.get("deployment") or body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _BadRequest("'messages' must be a non-empty array of objects", param="messages")
    base, b = state.behaviour(model, request.headers)
    stream = body.get("stream") is True
    stream_options = body.get("stream_options")
    if stream_options is not None and not b.stream_options:
        raise _BadRequest("Unrecognized request argument supplied: stream_options", param="stream_options")
    max_tokens = _max_tokens(body, "max_completion_tokens", "max_tokens")
    tool = _openai_tool(body)
    sampling = _sampling(body, messages)
    index = state.record(model, body)

    if b.hang_after is not None and not stream:
        b = Behaviour.from_knobs({"hang": 1})
    failed = await _gate(request, state, "openai", model, b, index, _pre_ms(b) if stream else b.latency_ms)
    if failed is not None:
        return failed
    format_ = sampling.answer_format
    plans = [
        _plan(state, b, base, messages, max_tokens, tool, variant=sampling.variant(i), answer_format=format_)
        for i in range(sampling.n)
    ]
    if b.garbage in (2, 3):
        return _garbage_answer(b.garbage, model, plans[0].pieces, stream)
    # Drawn once per choice: the stream's chunks carry the same entries as the JSON answer would.
    logprobs = (
        [None if p.tool else _logprobs(state, base, p.key, p.pieces, sampling.top_logprobs) for p in plans]
        if sampling.logprobs
        else None
    )
    completion = _Completion(f"chatcmpl-fake{state.ids}", int(time.time()), model, plans, logprobs)
    if not stream:
        if b.garbage:
            return web.Response(body=_GARBAGE_JSON, content_type="application/json")
        result = completion.as_json(with_usage=bool(b.usage))
        if b.truncate_after is not None:
            return await _cut_off(request, _dumps(result).encode())
        return _json(result)

    events, token_events = completion.chunks()
    if b.garbage == 4:
        pieces = plans[0].pieces
        events = [f"data: {piece}\n\n".encode() for piece in pieces] + [b"data: [DONE]\n\n"]
        token_events = set(range(1, len(pieces)))
    elif b.garbage:
        events[1:] = [(completion.head + '[{"index":0,"delta":{"content":"trunc\n\n').encode()]
    else:
        events.extend(completion.chunk({}, p.finish, i) for i, p in enumerate(plans))
        if b.usage and isinstance(stream_options, dict) and stream_options.get("include_usage"):
            events.append((completion.head + "[]," + f'"usage":{_dumps(completion.usage)}' + "}\n\n").encode())
        events.append(b"data: [DONE]\n\n")
    error_event = (
        "data: " + _dumps(_openai_error_body(500, "fake upstream: simulated error mid-stream")) + "\n\n"
    ).encode()
    return await _stream_out(request, state, b, _pre_ms(b), events, frozenset(token_events), error_event)


def _garbage_answer(kind: int, model: str, pieces: list[str], stream: bool) -> web.Response:
    """garbage=2: an HTML page; garbage=3: JSON in another API's shape (Ollama's native one). Both 200."""
    if kind == 2:
        return web.Response(body=_GARBAGE_HTML, content_type="text/html")
    if not stream:
        return _json({"model": model, "response": "".join(pieces), "done": True})
    events = [f"data: {_dumps({'model': model, 'response': piece, 'done': False})}\n\n" for piece in pieces]
    events.append(f"data: {_dumps({'model': model, 'response': '', 'done': True})}\n\ndata: [DONE]\n\n")
    return web.Response(body="".join(events).encode(), content_type="text/event-stream")


async def _cut_off(request: web.Request, payload: bytes) -> web.StreamResponse:
    """Announce ``payload``'s length, send half of it, drop the connection (truncate_after on JSON)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload[: len(payload) // 2])
    _drop(request)
    return response


def _signature(thinking: str) -> str:
    """The opaque signature of a thinking block: the fake can tell its own blocks when they come back."""
    return base64.b64encode(
        hashlib.blake2b(thinking.encode(), digest_size=48, person=b"fake-thinking").digest()
    ).decode()


def _thinking_budget(body: Mapping[str, Any], max_tokens: int) -> tuple[int, bool] | None:
    """(budget, shown) of an Anthropic request's thinking (None: no thinking), checked as Anthropic does.

    ``adaptive`` (and ``between_tools``) leave the budget to the model: the fake thinks within max_tokens.
    ``display: "omitted"`` keeps the block and its signature but not its text."""
    thinking = body.get("thinking")
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return None
    if kind not in ("enabled", "adaptive", "between_tools"):
        raise _BadRequest("thinking.type: Input should be 'enabled', 'disabled', 'adaptive' or 'between_tools'")
    budget = max_tokens - 1
    if kind == "enabled":
        requested = thinking.get("budget_tokens")
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1024:
            raise _BadRequest("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if max_tokens <= requested:
            raise _BadRequest("`max_tokens` must be greater than `thinking.budget_tokens`.")
        budget = requested
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise _BadRequest("Thinking may not be enabled when tool_choice forces tool use.")
    return budget, thinking.get("display") != "omitted"


def _check_thinking_signatures(messages: list[Any]) -> None:
    """Thinking blocks sent back (a tool-use turn with thinking) must be the fake's own, unchanged."""
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else ()):
            thinking = block.get("thinking") if isinstance(block, dict) and block.get("type") == "thinking" else None
            if thinking is not None and block.get("signature") != _signature(str(thinking)):
                raise _BadRequest(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")


# A block as content_block_start opens it: its content comes in the deltas.
_EMPTY_BLOCKS: Final[dict[str, dict[str, Any]]] = {
    "thinking": {"thinking": "", "signature": ""},
    "text": {"text": ""},
    "tool_use": {"input": {}},
}
_STOP_REASONS: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


async def _messages(request: web.Request) -> web.StreamResponse:
    """Anthropic Messages API."""
    state = request.app[STATE]
    body = await _read_body(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("model: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _BadRequest("messages: Field required (a non-empty list of objects)")
    max_tokens = _max_tokens(body, "max_tokens")
    if max_tokens is None:
        raise _BadRequest("max_tokens: Field required")
    system = _content_text(body.get("system"))
    base, b = state.behaviour(model, request.headers)
    stream = body.get("stream") is True
    tool = _anthropic_tool(body)
    thinking_config = _thinking_budget(body, max_tokens)
    budget, shown = thinking_config if thinking_config is not None else (None, True)
    _check_thinking_signatures(messages)
    index = state.record(model, body)

    if b.hang_after is not None and not stream:
        b = Behaviour.from_knobs({"hang": 1})
    failed = await _gate(request, state, "anthropic", model, b, index, _pre_ms(b) if stream else b.latency_ms)
    if failed is not None:
        return failed
    plan = _plan(state, b, base, messages, max_tokens, tool, system, tool_prefix="toolu_", thinking_budget=budget)
    if budget is not None and not shown:
        plan.thinking = []  # thought (and counted) all the same, but not shown
    content = _anthropic_content(plan, thinking=budget is not None)
    message: dict[str, Any] = {
        "id": f"msg_fake{state.ids}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS[plan.finish],
        "stop_sequence": None,
    }
    if b.usage:
        message["usage"] = {"input_tokens": plan.prompt_tokens, "output_tokens": plan.completion_tokens}
    if not stream:
        if b.garbage:
            return web.Response(
                body=b'{"id":"msg_garbage","type":"message","content":[{"ty', content_type="application/json"
            )
        return _json(message)
    events, token_events = _anthropic_events(message, plan, garbage=bool(b.garbage))
    error_event = _sse_event("error", _anthropic_error_body(529, "fake upstream: simulated overload mid-stream"))
    return await _stream_out(request, state, b, _pre_ms(b), events, frozenset(token_events), error_event)


def _anthropic_content(plan: _Plan, *, thinking: bool) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if thinking:
        text = "".join(plan.thinking)
        content.append({"type": "thinking", "thinking": text, "signature": _signature(text)})
    if plan.tool is not None:
        tool_id, name, arguments = plan.tool
        content.append({"type": "tool_use", "id": tool_id, "name": name, "input": json.loads(arguments)})
    else:
        content.append({"type": "text", "text": "".join(plan.pieces)})
    return content


def _sse_event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()


def _block_deltas(block: Mapping[str, Any], plan: _Plan) -> list[tuple[dict[str, Any], bool]]:
    """The deltas that fill ``block``, each with whether it waits for the next token (tps)."""
    if block["type"] == "thinking":
        thinking = [({"type": "thinking_delta", "thinking": piece}, True) for piece in plan.thinking]
        return [*thinking, ({"type": "signature_delta", "signature": block["signature"]}, False)]
    if block["type"] == "tool_use":
        arguments = plan.tool[2] if plan.tool is not None else "{}"
        half = len(arguments) // 2
        return [
            ({"type": "input_json_delta", "partial_json": part}, True) for part in (arguments[:half], arguments[half:])
        ]
    return [({"type": "text_delta", "text": piece}, True) for piece in plan.pieces]


def _anthropic_events(message: Mapping[str, Any], plan: _Plan, *, garbage: bool) -> tuple[list[bytes], set[int]]:
    """Anthropic's stream of ``message``: message_start (empty content, usage so far), each block as start,
    deltas, stop (one ping after the first start), message_delta (stop reason, usage), message_stop."""
    start = {**message, "content": [], "stop_reason": None}
    if "usage" in start:
        start["usage"] = {"input_tokens": plan.prompt_tokens, "output_tokens": 1}
    events = [_sse_event("message_start", {"type": "message_start", "message": start})]
    token_events: set[int] = set()
    for index, block in enumerate(message["content"]):
        opened = {**block, **_EMPTY_BLOCKS[block["type"]]}
        start_block = {"type": "content_block_start", "index": index, "content_block": opened}
        events.append(_sse_event("content_block_start", start_block))
        if index == 0:
            events.append(_sse_event("ping", {"type": "ping"}))
        for delta, paced in _block_deltas(block, plan):
            if paced:
                token_events.add(len(events))
            data = {"type": "content_block_delta", "index": index, "delta": delta}
            events.append(_sse_event("content_block_delta", data))
        if garbage:
            del events[2:]
            events.append(b'event: content_block_delta\ndata: {"type":"content_block_delta","ind\n\n')
            return events, token_events
        events.append(_sse_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    closing: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
    }
    if "usage" in message:
        closing["usage"] = {"output_tokens": message["usage"]["output_tokens"]}
    events.append(_sse_event("message_delta", closing))
    events.append(_sse_event("message_stop", {"type": "message_stop"}))
    return events, token_events


# --------------------------------------------------------------------------------------------------------
# OpenAI Responses API


def _responses_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chat messages a Responses body stands for (what the answer is drawn from), checked as OpenAI does."""
    raw = body.get("input")
    instructions = body.get("instructions")
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": instructions}] if isinstance(instructions, str) and instructions else []
    )
    if isinstance(raw, str):
        return [*messages, {"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise _BadRequest("Invalid 'input': expected a string or a non-empty array of items.", param="input")
    for index, item in enumerate(raw):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message" and isinstance(item, dict):
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            messages.append({"role": item.get("role"), "content": content if isinstance(content, str) else ""})
        elif kind == "function_call" and isinstance(item, dict):
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            call = {"id": item.get("call_id"), "type": "function", "function": function}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output" and isinstance(item, dict):
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": str(item.get("output"))})
        else:
            raise _BadRequest(f"Invalid value for 'input[{index}].type': {_dumps(kind)}.", param=f"input[{index}].type")
    return messages


def _responses_tool(body: Mapping[str, Any], messages: list[Any]) -> tuple[str, dict[str, Any]] | None:
    """The function tool to call, as for chat (``_openai_tool``), from the Responses tool shapes."""
    tools = body.get("tools")
    if not tools:
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("type") == "function" for t in tools):
        raise _BadRequest("Invalid 'tools': the fake upstream serves function tools only.", param="tools")
    chat_tools = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}} for t in tools]
    return _openai_tool({"tools": chat_tools, "tool_choice": body.get("tool_choice"), "messages": messages})


def _responses_format(body: Mapping[str, Any], messages: list[Any]) -> _Format:
    spec = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if not isinstance(spec, dict) or spec.get("type") in (None, "text"):
        return None
    if spec.get("type") == "json_schema":
        fields = {k: v for k, v in spec.items() if k != "type"}
        return _answer_format({"type": "json_schema", "json_schema": fields}, messages)
    return _answer_format({"type": spec.get("type")}, messages)


def _response_object(
    body: Mapping[str, Any], response_id: str, model: str, status: str, output: list[Any], usage: Any
) -> dict[str, Any]:
    """A Response object, its fields in OpenAI's order (routing/tests/fixtures/openai_responses_stream.sse)."""
    text = body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": text,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _response_output(plan: _Plan, number: int) -> list[dict[str, Any]]:
    if plan.tool is not None:
        call_id, name, arguments = plan.tool
        return [
            {
                "id": f"fc_fake{number}",
                "type": "function_call",
                "status": "completed",
                "arguments": arguments,
                "call_id": call_id,
                "name": name,
            }
        ]
    status = "incomplete" if plan.finish == "length" else "completed"
    part = {"type": "output_text", "annotations": [], "text": "".join(plan.pieces)}
    return [{"id": f"msg_fake{number}", "type": "message", "status": status, "role": "assistant", "content": [part]}]


class _ResponseEvents:
    """The typed events of one streamed response, numbered; which of them wait for the next token (tps)."""

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.paced: set[int] = set()

    def add(self, kind: str, paced: bool = False, **fields: Any) -> None:
        if paced:
            self.paced.add(len(self.events))
        self.events.append(_sse_event(kind, {"type": kind, **fields, "sequence_number": len(self.events)}))


def _response_events(response: dict[str, Any], plan: _Plan) -> _ResponseEvents:
    """response.created, .in_progress, each output item (added, its deltas, done), then the final event."""
    out = _ResponseEvents()
    opening = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    out.add("response.created", response=opening)
    out.add("response.in_progress", response=opening)
    for index, item in enumerate(response["output"]):
        if item["type"] == "function_call":
            out.add(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            half = len(item["arguments"]) // 2
            for part in (item["arguments"][:half], item["arguments"][half:]):
                out.add(
                    "response.function_call_arguments.delta", True, item_id=item["id"], output_index=index, delta=part
                )
            out.add(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
        else:
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out.add(
                "response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []}
            )
            out.add("response.content_part.added", **where, part={"type": "output_text", "annotations": [], "text": ""})
            for piece in plan.pieces:
                out.add("response.output_text.delta", True, **where, delta=piece)
            part = item["content"][0]
            out.add("response.output_text.done", **where, text=part["text"])
            out.add("response.content_part.done", **where, part=part)
        out.add("response.output_item.done", output_index=index, item=item)
    out.add(f"response.{response['status']}", response=response)
    return out


async def _responses(request: web.Request) -> web.StreamResponse:
    """OpenAI Responses API (``POST /v1/responses``): function tools, ``text.format``, the typed event stream."""
    state = request.app[STATE]
    body = await _read_body(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("Missing required parameter: 'model'.", param="model")
    if body.get("previous_response_id") is not None:
        raise _BadRequest(
            "The fake upstream keeps no responses: previous_response_id is not served.", param="previous_response_id"
        )
    messages = _responses_messages(body)
    base, b = state.behaviour(model, request.headers)
    stream = body.get("stream") is True
    max_tokens = _max_tokens(body, "max_output_tokens")
    tool = _responses_tool(body, messages)
    answer_format = _responses_format(body, messages)
    index = state.record(model, body)
    if b.hang_after is not None and not stream:
        b = Behaviour.from_knobs({"hang": 1})
    failed = await _gate(request, state, "openai", model, b, index, _pre_ms(b) if stream else b.latency_ms)
    if failed is not None:
        return failed
    plan = _plan(state, b, base, messages, max_tokens, tool, answer_format=answer_format)
    usage = {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": plan.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }
    status = "incomplete" if plan.finish == "length" else "completed"
    output = _response_output(plan, state.ids)
    response = _response_object(body, f"resp_fake{state.ids}", model, status, output, usage if b.usage else None)
    if not stream:
        return _json(response)
    events = _response_events(response, plan)
    error = {
        "type": "error",
        "code": "server_error",
        "message": "fake upstream: simulated error mid-stream",
        "param": None,
    }
    error_event = _sse_event("error", {**error, "sequence_number": len(events.events)})
    return await _stream_out(request, state, b, _pre_ms(b), events.events, frozenset(events.paced), error_event)


def _embedding_inputs(raw: Any) -> list[str]:
    """Texts to embed; token arrays are keyed by their ids."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
            return ["\x00tokens:" + ",".join(map(str, raw))]
        texts: list[str] = []
        for item in raw:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, list) and all(isinstance(x, int) for x in item):
                texts.append("\x00tokens:" + ",".join(map(str, item)))
            else:
                break
        else:
            return texts
    message = "'input' must be a string, an array of strings or an array of token arrays"
    raise _BadRequest(message, param="input")


async def _embeddings(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _read_body(request)
    model = request.match_info.get("deployment") or body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("you must provide a model parameter", param="model")
    if "input" not in body:
        raise _BadRequest("'input' is a required property", param="input")
    texts = _embedding_inputs(body["input"])
    encoding_format = body.get("encoding_format", "float")
    if encoding_format not in ("float", "base64"):
        raise _BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    base, b = state.behaviour(model, request.headers)
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or not 1 <= dimensions <= 16384):
        raise _BadRequest("'dimensions' must be an integer between 1 and 16384", param="dimensions")
    index = state.record(model, body)

    if b.hang_after is not None:
        b = Behaviour.from_knobs({"hang": 1})
    failed = await _gate(request, state, "openai", model, b, index, b.latency_ms)
    if failed is not None:
        return failed
    if b.garbage:
        return web.Response(
            body=b'{"object":"list","data":[{"object":"embedding","embedding":[0.1,',
            content_type="application/json",
        )
    dim = dimensions or b.dim
    data: list[dict[str, Any]] = []
    tokens = 0
    for i, text in enumerate(texts):
        vector = _embedding(base, text, dim)
        b64 = encoding_format == "base64"
        value: Any = base64.b64encode(vector.tobytes()).decode() if b64 else vector.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
        tokens += text.count(",") + 1 if text.startswith("\x00tokens:") else _count_cached(text, base)
    result: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if b.usage:
        result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _json(result)


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "fake-upstream"}


def _model_names(state: _State) -> Iterator[str]:
    yield from state.seen
    yield from (name for name in state.configs if name != "*" and name not in state.seen)


async def _models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    return _json({"object": "list", "data": [_model_entry(name) for name in _model_names(state)]})


async def _model(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    name = request.match_info["model"]
    if name not in set(_model_names(state)):
        message = f"The model '{name}' does not exist"
        return _error("openai", 404, message, code="model_not_found", param="model")
    return _json(_model_entry(name))


async def _health(request: web.Request) -> web.StreamResponse:
    return _json({"status": "ok"})


async def _control_set_models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _read_body(request)
    parsed: dict[str, Knobs] = {}
    for name, knobs in body.items():
        if not isinstance(knobs, dict):
            raise _BadRequest(f"the behaviour of {name!r} must be an object of knobs")
        parsed[name] = parse_knobs(knobs)
    state.configs.update(parsed)
    return _json({"models": state.configs})


async def _control_get_models(request: web.Request) -> web.StreamResponse:
    return _json({"models": request.app[STATE].configs})


async def _control_clear_models(request: web.Request) -> web.StreamResponse:
    request.app[STATE].configs.clear()
    return _json({"models": {}})


async def _control_stats(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    return _json({"requests": state.requests, "last": state.last, "total": sum(state.requests.values())})


async def _control_reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE].reset()
    return _json({"reset": True})


def create_app(seed: int = 0) -> web.Application:
    """The fake upstream as an aiohttp application (its state lives in the app, one per app)."""
    app = web.Application(client_max_size=32 * 1024 * 1024)
    state = _State(seed)
    app[STATE] = state

    async def on_shutdown(app: web.Application) -> None:
        state.closing.set()

    app.on_shutdown.append(on_shutdown)
    routes: list[web.RouteDef] = []
    for prefix in ("/v1", ""):
        routes += [
            web.post(f"{prefix}/chat/completions", _guarded(_chat_completions, "openai")),
            web.post(f"{prefix}/embeddings", _guarded(_embeddings, "openai")),
            web.get(f"{prefix}/models", _models),
            web.get(prefix + "/models/{model:.+}", _model),
            web.post(f"{prefix}/messages", _guarded(_messages, "anthropic")),
            web.post(f"{prefix}/responses", _guarded(_responses, "openai")),
        ]
    routes += [
        web.post("/openai/deployments/{deployment}/chat/completions", _guarded(_chat_completions, "openai")),
        web.post("/openai/deployments/{deployment}/embeddings", _guarded(_embeddings, "openai")),
        web.post("/openai/responses", _guarded(_responses, "openai")),  # Azure's (api-version in the query)
        web.get("/health", _health),
        web.post("/_fake/models", _guarded(_control_set_models, "openai")),
        web.get("/_fake/models", _control_get_models),
        web.delete("/_fake/models", _control_clear_models),
        web.get("/_fake/stats", _control_stats),
        web.post("/_fake/reset", _control_reset),
    ]
    app.add_routes(routes)
    return app


# --------------------------------------------------------------------------------------------------------
# Running it


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # optional (installed with uvicorn[standard]); about twice the throughput
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class FakeUpstream:
    """The fake upstream served from a background thread (its own event loop).

    ``with FakeUpstream() as fake: OpenAI(base_url=fake.url + "/v1", ...)``; ``port=0`` picks a free port.
    """

    def __init__(self, port: int = 0, seed: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL without ``/v1``, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if self._thread is not None:
            raise RuntimeError("the fake upstream is already started")
        self._thread = threading.Thread(target=self._run, name=f"fake-upstream-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError(f"the fake upstream could not start: {self._error}") from self._error
        return self.url

    def _run(self) -> None:
        loop = _new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        runner = web.AppRunner(create_app(self.seed), access_log=None, shutdown_timeout=2.0)
        self._runner = runner
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port, backlog=1024)
            loop.run_until_complete(site.start())
            self.port = int(runner.addresses[0][1])
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def stop(self) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_in_thread(port: int = 0, seed: int = 0, host: str = "127.0.0.1") -> tuple[str, Callable[[], None]]:
    """Start the fake in a background thread; returns (base URL without /v1, stop function)."""
    fake = FakeUpstream(port=port, seed=seed, host=host)
    return fake.start(), fake.stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llm.fake_upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("FAKE_UPSTREAM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("FAKE_UPSTREAM_PORT", "8900")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FAKE_UPSTREAM_SEED", "0")))
    args = parser.parse_args(argv)
    loop = _new_event_loop()
    asyncio.set_event_loop(loop)
    print(f"fake upstream on http://{args.host}:{args.port} (seed {args.seed})", flush=True)
    web.run_app(
        create_app(args.seed),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=2.0,
        loop=loop,
    )


if __name__ == "__main__":
    main()
