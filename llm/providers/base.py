"""The provider interface and the bookkeeping every provider shares.

A provider turns a `ChatRequest` into a `GenerationResult` (or a stream of `StreamEvent`s) for one
upstream, and raises only `LLMError`s. It owns its HTTP clients: created lazily, then reused by every
call (one connection pool per provider, and per event loop for the async client).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from typing import ClassVar, Generic, TypeVar

import httpx2

from ..errors import (
    BadRequestError,
    ContentFilteredError,
    InvalidResponseError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
)
from ..tokens import count_message_tokens, count_tokens, is_exact
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

__all__ = ["AsyncClientCache", "Clock", "Provider", "StreamAccumulator", "build_result", "local_usage"]

Clock = Callable[[], float]
_C = TypeVar("_C")


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
        key = self.config.api_key
        if key and key in message:
            message = message.replace(key, "***")
        return message

    def _timeout_error(self, phase: str, model: str) -> LLMTimeoutError:
        return LLMTimeoutError(
            f"provider {self.name!r} timed out ({phase})", phase=phase, provider=self.name, model=model
        )

    def _invalid(self, message: str, model: str) -> InvalidResponseError:
        return InvalidResponseError(self._redact(message), provider=self.name, model=model)

    def _map_transport_error(
        self, exc: BaseException, model: str, *, in_body: bool = False, first_token_pending: bool = False
    ) -> LLMError:
        """Our error for an HTTP-client or decoding exception.

        `in_body`: raised while reading the body of a 200 answer (a broken-off stream is an invalid
        response, not a connection failure). `first_token_pending`: a read timeout now means the
        first-token budget ran out.
        """
        if isinstance(exc, httpx2.ConnectTimeout):
            return self._timeout_error("connect", model)
        if isinstance(exc, httpx2.TimeoutException | TimeoutError):
            return self._timeout_error("first_token" if first_token_pending else "total", model)
        if isinstance(exc, ValueError) and not isinstance(exc, httpx2.HTTPError):
            return self._invalid(f"the upstream sent invalid JSON: {exc}", model)
        detail = self._redact(str(exc) or type(exc).__name__)
        if in_body:
            return self._invalid(f"the upstream response broke off: {detail}", model)
        return LLMConnectionError(
            f"cannot reach provider {self.name!r} at {self.config.safe_base_url}: {detail}",
            provider=self.name,
            model=model,
        )


class AsyncClientCache(Generic[_C]):
    """One async client per event loop.

    An async connection pool is bound to the loop that opened its connections; reusing it from another
    loop (asyncio.run per Celery task, async_to_sync) fails. The common case - one loop per process - is a
    single identity check.
    """

    def __init__(self, factory: Callable[[], _C]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _C] = weakref.WeakKeyDictionary()
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _C] | None = None
        self._lock = threading.Lock()

    def get(self) -> _C:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = self._factory()
                self._clients[loop] = client
            self._last = (weakref.ref(loop), client)
            return client

    async def aclose_current(self, closer: Callable[[_C], Awaitable[None]]) -> None:
        """Close the running loop's client; clients of other loops are dropped with their loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
            self._last = None
        if client is not None:
            await closer(client)


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
