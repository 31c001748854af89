"""The provider interface and the bookkeeping every provider shares.

A provider turns a `ChatRequest` into a `GenerationResult` (or a stream of `StreamEvent`s) for one
upstream, and raises only `LLMError`s. It speaks its upstream's wire format; connections, time budgets
and transport failures are its `llm.transport.Transport`'s (one connection pool per provider, and per
event loop for async clients).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import ClassVar

from ..errors import BadRequestError, ContentFilteredError, InvalidResponseError, LLMTimeoutError
from ..tokens import count_message_tokens, count_tokens, is_exact
from ..transport import redact, timeout_error
from ..types import (
    ChatRequest,
    EmbeddingResult,
    GenerationResult,
    ProviderConfig,
    StreamEvent,
    ToolCall,
    Usage,
    compute_timings,
)

__all__ = ["Clock", "Provider", "StreamAccumulator", "build_result", "local_usage"]

Clock = Callable[[], float]


class Provider(ABC):
    """One upstream. Thread-safe; async methods may be used from several event loops."""

    # Runs in this process: a config of such a kind needs no base URL.
    in_process: ClassVar[bool] = False

    @classmethod
    def check_config(cls, config: ProviderConfig) -> None:
        """Raise ValueError if `config` lacks what this provider needs (called by `ProviderConfig`)."""
        return None  # most providers need nothing beyond what ProviderConfig checks itself

    def __init__(self, config: ProviderConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @abstractmethod
    def generate(self, request: ChatRequest) -> GenerationResult: ...

    @abstractmethod
    async def agenerate(self, request: ChatRequest) -> GenerationResult: ...

    @abstractmethod
    def stream(self, request: ChatRequest) -> Generator[StreamEvent, None, None]:
        """Deltas, then one `done` event. Raises ContentFilteredError after the deltas when filtered."""

    @abstractmethod
    def astream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]: ...

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        raise BadRequestError(
            f"provider {self.name!r} ({self.config.kind}) has no embeddings API",
            provider=self.name,
            model=model,
        )

    async def aembed(self, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        return self.embed(model, inputs)

    @abstractmethod
    def close(self) -> None:
        """Close the sync client (async clients are closed by `aclose`)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the sync client and the running loop's async client."""

    # -- error helpers shared by the providers ---------------------------------------------------------

    def _redact(self, message: str) -> str:
        """Remove the API key from a message that may quote request details."""
        return redact(message, self.config.api_key)

    def _timeout_error(self, phase: str, model: str) -> LLMTimeoutError:
        return timeout_error(self.name, phase, model)

    def _invalid(self, message: str, model: str) -> InvalidResponseError:
        return InvalidResponseError(self._redact(message), provider=self.name, model=model)


def local_usage(request: ChatRequest, text: str, tool_calls: Sequence[ToolCall]) -> Usage:
    """Usage counted offline when the upstream did not report it."""
    prompt = count_message_tokens(request.messages, request.model)
    completion = count_tokens(text, request.model)
    for call in tool_calls:
        completion += count_tokens(call.name, request.model) + count_tokens(call.arguments, request.model)
    return Usage(prompt, completion, prompt + completion, estimated=not is_exact(request.model))


def build_result(
    *,
    provider: str,
    request: ChatRequest,
    text: str,
    finish_reason: str | None,
    tool_calls: tuple[ToolCall, ...],
    usage: Usage | None,
    model: str | None,
    start: float,
    first_token_at: float | None,
    end: float,
) -> GenerationResult:
    """The final result; raises ContentFilteredError when the upstream stopped on its content filter."""
    if finish_reason == "content_filter":
        raise ContentFilteredError(
            "the upstream stopped the generation on its content filter",
            provider=provider,
            model=request.model,
        )
    if usage is None:
        usage = local_usage(request, text, tool_calls)
    return GenerationResult(
        text=text,
        finish_reason=finish_reason,
        tool_calls=tool_calls,
        usage=usage,
        timings=compute_timings(start, first_token_at, end, usage.completion_tokens),
        model=model or request.model,
        provider=provider,
    )


class StreamAccumulator:
    """Collects a stream's deltas into the final result."""

    __slots__ = ("_calls", "_parts", "finish_reason", "first_token_at", "model", "usage")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments...]
        self.finish_reason: str | None = None
        self.first_token_at: float | None = None
        self.usage: Usage | None = None
        self.model: str | None = None

    def add_text(self, text: str) -> None:
        self._parts.append(text)

    def add_tool_call(self, index: int, call_id: str | None, name: str | None, arguments: str) -> None:
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = ["", ""]
        if call_id:
            call[0] = call_id
        if name:
            call[1] += name
        if arguments:
            call.append(arguments)

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=call[0], name=call[1], arguments="".join(call[2:]) or "{}")
            for _, call in sorted(self._calls.items())
        )

    def done_event(self, *, provider: str, request: ChatRequest, start: float, end: float) -> StreamEvent:
        result = build_result(
            provider=provider,
            request=request,
            text="".join(self._parts),
            finish_reason=self.finish_reason,
            tool_calls=self.tool_calls(),
            usage=self.usage,
            model=self.model,
            start=start,
            first_token_at=self.first_token_at,
            end=end,
        )
        return StreamEvent(type="done", finish_reason=self.finish_reason, result=result)
