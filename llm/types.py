"""Plain data passed in and out of `llm`: provider configuration, requests, results, stream events.

Every class here is a frozen, slotted dataclass: cheap to build on the hot path and safe to share
between threads and tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "ChatRequest",
    "Choice",
    "EmbeddingResult",
    "GenerationParams",
    "GenerationResult",
    "ProviderConfig",
    "StreamEvent",
    "Timings",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "compute_timings",
]


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """How to reach one upstream provider.

    `name` is the prefix of model ids (`"<name>/<model>"`), so it may not contain "/".
    Raises ValueError for an unknown `kind`, a non-http(s) `base_url` (none is needed by an in-process
    kind), what the kind's provider refuses (`Provider.check_config`: an azure provider without
    `api_version`), or non-positive limits.
    `repr()` never shows the API key nor header values (they may carry secrets too).
    """

    name: str
    kind: str
    base_url: str
    api_key: str | None = None
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    first_token_timeout_s: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    api_version: str | None = None
    max_connections: int = 100
    # A request parameter this provider cannot honour is dropped (logged at debug) rather than refused with
    # `UnsupportedParameterError` (LiteLLM's name for the same switch).
    drop_params: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"provider name must be non-empty and contain no '/': {self.name!r}")
        # Imported here: the providers import this module, and the registry is complete once they are.
        from .providers import PROVIDERS_BY_KIND

        provider = PROVIDERS_BY_KIND.get(self.kind)
        if provider is None:
            raise ValueError(
                f"unknown provider kind {self.kind!r} for {self.name!r}; expected one of {sorted(PROVIDERS_BY_KIND)}"
            )
        parts = urlsplit(self.base_url)
        in_process = provider.in_process and not self.base_url
        if not in_process and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"base_url of provider {self.name!r} must be an http(s) URL")
        provider.check_config(self)
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.first_token_timeout_s is not None and self.first_token_timeout_s <= 0:
            raise ValueError("first_token_timeout_s must be positive when set")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        # A read-only copy: the caller's dict can change later without changing this config.
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def safe_base_url(self) -> str:
        """`base_url` with any user:password part masked, for logs and error messages."""
        parts = urlsplit(self.base_url)
        if not (parts.username or parts.password):
            return self.base_url
        netloc = f"***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    def __repr__(self) -> str:
        return (
            f"ProviderConfig(name={self.name!r}, kind={self.kind!r}, base_url={self.safe_base_url!r}, "
            f"api_key={'***' if self.api_key else None}, timeout_s={self.timeout_s!r}, "
            f"connect_timeout_s={self.connect_timeout_s!r}, "
            f"first_token_timeout_s={self.first_token_timeout_s!r}, "
            f"headers={sorted(self.headers)!r}, api_version={self.api_version!r}, "
            f"max_connections={self.max_connections!r}, drop_params={self.drop_params!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class Timings:
    """`ttft_ms` is None for non-streamed calls; `tokens_per_sec` is None when not computable."""

    ttft_ms: float | None
    total_ms: float
    tokens_per_sec: float | None


def compute_timings(start: float, first_token_at: float | None, end: float, completion_tokens: int) -> Timings:
    """Timings from clock readings in seconds.

    tokens/s counts the tokens after the first one over the time after the first token, so it measures
    decoding speed independently of queueing and prompt processing.
    """
    total_ms = (end - start) * 1000.0
    if first_token_at is None:
        return Timings(ttft_ms=None, total_ms=total_ms, tokens_per_sec=None)
    decode_s = end - first_token_at
    tps = (completion_tokens - 1) / decode_s if completion_tokens > 1 and decode_s > 0 else None
    return Timings(ttft_ms=(first_token_at - start) * 1000.0, total_ms=total_ms, tokens_per_sec=tps)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call; `arguments` is the JSON string as OpenAI sends it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call: id and name arrive first, `arguments` in pieces."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class Choice:
    """One of several choices (a request's `n` > 1), as the upstream returned it.

    `logprobs` is OpenAI's choice `logprobs` object (`{"content": [...], "refusal": ...}`) as received.
    """

    index: int
    text: str
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """`model` is the model name as the upstream reported it; `provider` is the ProviderConfig name.

    `text`, `finish_reason`, `tool_calls`, `logprobs` and `refusal` are the first choice's; `choices` holds
    every choice (the first included) when the upstream returned more than one, else it is empty.
    `logprobs` is OpenAI's choice `logprobs` object as received (None when not asked for).
    """

    text: str
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    timings: Timings
    model: str
    provider: str
    logprobs: Any = None
    refusal: str | None = None
    system_fingerprint: str | None = None
    choices: tuple[Choice, ...] = ()
    # The upstream's own answer, when it served a request in its own format (`ChatRequest.native`): the
    # Anthropic message, for the Anthropic door to relay as it came.
    native: Mapping[str, Any] | None = None


# One event of an upstream's own stream, as it came: (event name, data).
NativeEvent = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One item of a stream. The last event of every stream is `type="done"` carrying the full result.

    `index` is the choice the delta belongs to (a request's `n` > 1); `logprobs` the chunk's choice
    `logprobs` object as received; `system_fingerprint` the upstream's, when its chunk carried one.
    `native`: for a request in the upstream's own format, the upstream's events up to this one (those that
    carry no content ride on the next one that does, or on `done`), for the door to relay as they came.
    """

    type: Literal["delta", "done"]
    content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    result: GenerationResult | None = None
    index: int = 0
    logprobs: Any = None
    refusal: str = ""
    system_fingerprint: str | None = None
    native: tuple[NativeEvent, ...] | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling and tool parameters, for callers that prefer one object to keyword arguments.

    `LLMHandler.generate(model, messages, **params.as_kwargs())`.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: str | Sequence[str] | None = None
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    user: str | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "user": self.user,
        }


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a provider receives: `model` is the provider-local name (without the "<provider>/" prefix).

    `messages` are OpenAI-style chat messages, passed through without copying.
    `timeout_s` overrides the provider's total timeout for this call when set.
    `params` are the other OpenAI chat-completions body fields (`response_format`, `seed`, `logprobs`, `n`,
    ...): an OpenAI-compatible provider sends them unchanged, another kind translates those it can and
    refuses the others (`UnsupportedParameterError`) unless its config says `drop_params`.
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: str | Sequence[str] | None = None
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    user: str | None = None
    timeout_s: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    # Sample from the `top_k` likeliest tokens (the Anthropic Messages API's field): not an OpenAI
    # chat-completions field, so an OpenAI-compatible provider refuses it (`UnsupportedParameterError`)
    # unless its config says `drop_params`; an Anthropic provider sends it.
    top_k: int | None = None
    # The request as a door received it in an upstream's own format, by format ({"anthropic": body}): a
    # provider of that format sends it (its model, max_tokens and stream set) instead of translating
    # `messages`, and answers with `native` results and events. Other providers ignore it.
    native: Mapping[str, Mapping[str, Any]] | None = None
