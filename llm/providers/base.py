"""The provider interface and the bookkeeping every provider shares.

A provider turns a `ChatRequest` into a `GenerationResult` (or a stream of `StreamEvent`s) for one
upstream, and raises only `LLMError`s. It speaks its upstream's wire format; connections, time budgets
and transport failures are its `llm.transport.Transport`'s (one connection pool per provider, and per
event loop for async clients).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Collection, Generator, Mapping, Sequence
from typing import Any, ClassVar

from ..errors import (
    BadRequestError,
    ContentFilteredError,
    InvalidResponseError,
    LLMTimeoutError,
    UnsupportedParameterError,
)
from ..tokens import count_message_tokens, count_tokens, is_exact
from ..transport import redact, timeout_error
from ..types import (
    ChatRequest,
    Choice,
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

_log = logging.getLogger(__name__)

# Values of OpenAI parameters that ask for nothing more than every provider does anyway (one choice, no
# log probabilities, no penalty...): no provider needs to translate them, so none refuses them.
_NO_OP_VALUES: Mapping[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "parallel_tool_calls": (True,),
    "store": (False,),
    "metadata": ({},),
    "service_tier": ("auto",),
    "response_format": ({"type": "text"},),
    "modalities": (["text"],),
}


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

    def honoured_params(self, request: ChatRequest, translated: Collection[str]) -> dict[str, Any]:
        """The request's params that this provider acts on (those named in `translated`, which it knows how
        to send). Any other param is refused with `UnsupportedParameterError`, or dropped when the config
        says `drop_params`; a null, or a value that asks for nothing (`n` 1, `logprobs` false...), is left
        out silently, as it changes nothing."""
        kept: dict[str, Any] = {}
        for name, value in request.params.items():
            if value is None:
                continue
            if name in translated:
                kept[name] = value
            elif not _asks_nothing(name, value):
                self.unhonoured(request, name)
        return kept

    def unhonoured(self, request: ChatRequest, name: str) -> None:
        """The request asks `name`, which this provider cannot honour: `UnsupportedParameterError`, or
        nothing when the config says `drop_params` (the provider then sends the request without it)."""
        if self.config.drop_params:
            _log.debug("provider %s drops the unsupported parameter %r (drop_params)", self.name, name)
            return
        raise UnsupportedParameterError(
            f"Unsupported parameter: {name!r} is not supported by {self.config.kind} provider "
            f"{self.name!r} (model {request.model!r}). Remove it, or set drop_params on the provider "
            "to have it dropped.",
            param=name,
            provider=self.name,
            model=request.model,
        )

    # -- error helpers shared by the providers ---------------------------------------------------------

    def _redact(self, message: str) -> str:
        """Remove the API key from a message that may quote request details."""
        return redact(message, self.config.api_key)

    def _timeout_error(self, phase: str, model: str) -> LLMTimeoutError:
        return timeout_error(self.name, phase, model)

    def _invalid(self, message: str, model: str) -> InvalidResponseError:
        return InvalidResponseError(self._redact(message), provider=self.name, model=model)


def _asks_nothing(name: str, value: Any) -> bool:
    # A bool is only the bool it is: `n: true` is not `n: 1` (True == 1 in Python).
    return any(
        value == no_op and (type(value) is bool) == (type(no_op) is bool) for no_op in _NO_OP_VALUES.get(name, ())
    )


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
    logprobs: Any = None,
    refusal: str | None = None,
    system_fingerprint: str | None = None,
    choices: tuple[Choice, ...] = (),
) -> GenerationResult:
    """The final result; raises ContentFilteredError when the upstream stopped on its content filter (unless
    it said why, a ``refusal``: then that is the answer, as OpenAI's refusals are).

    `choices`: every choice when there are several (see `GenerationResult`); the other arguments are the
    first one's."""
    if finish_reason == "content_filter" and refusal is None:
        raise ContentFilteredError(
            "the upstream stopped the generation on its content filter",
            provider=provider,
            model=request.model,
        )
    if usage is None:
        usage = local_usage(request, text, tool_calls)
        for choice in choices[1:]:  # every choice's tokens are the completion's
            extra = local_usage(request, choice.text, choice.tool_calls).completion_tokens
            usage = Usage(usage.prompt_tokens, usage.completion_tokens + extra, usage.total_tokens + extra, True)
    return GenerationResult(
        text=text,
        finish_reason=finish_reason,
        tool_calls=tool_calls,
        usage=usage,
        timings=compute_timings(start, first_token_at, end, usage.completion_tokens),
        model=model or request.model,
        provider=provider,
        logprobs=logprobs,
        refusal=refusal,
        system_fingerprint=system_fingerprint,
        choices=choices,
    )


class _ChoiceParts:
    """What the deltas of one choice carried so far."""

    __slots__ = ("calls", "finish_reason", "logprobs", "parts", "refusal")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments...]
        self.finish_reason: str | None = None
        self.logprobs: dict[str, list[Any]] | None = None  # the chunks' logprobs lists, joined
        self.refusal: list[str] = []

    def add_tool_call(self, index: int, call_id: str | None, name: str | None, arguments: str) -> None:
        call = self.calls.get(index)
        if call is None:
            call = self.calls[index] = ["", ""]
        if call_id:
            call[0] = call_id
        if name:
            call[1] += name
        if arguments:
            call.append(arguments)

    def add_logprobs(self, logprobs: Any) -> None:
        if not isinstance(logprobs, Mapping):
            return
        if self.logprobs is None:
            self.logprobs = {}
        for key, entries in logprobs.items():
            if isinstance(entries, list):
                self.logprobs.setdefault(key, []).extend(entries)
            else:
                self.logprobs.setdefault(key, entries)

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=call[0], name=call[1], arguments="".join(call[2:]) or "{}")
            for _, call in sorted(self.calls.items())
        )

    def choice(self, index: int) -> Choice:
        return Choice(
            index=index,
            text="".join(self.parts),
            finish_reason=self.finish_reason,
            tool_calls=self.tool_calls(),
            logprobs=self.logprobs,
            refusal="".join(self.refusal) or None,
        )


class StreamAccumulator(_ChoiceParts):
    """Collects a stream's deltas into the final result: the first choice's here, the others' (a request's
    `n` > 1) in `others`."""

    __slots__ = ("first_token_at", "model", "others", "system_fingerprint", "usage")

    def __init__(self) -> None:
        super().__init__()
        self.first_token_at: float | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.system_fingerprint: str | None = None
        self.others: dict[int, _ChoiceParts] = {}

    def add_text(self, text: str) -> None:
        self.parts.append(text)

    def choice_parts(self, index: int) -> _ChoiceParts:
        """The parts of choice `index` (this accumulator itself for the first)."""
        if index == 0:
            return self
        parts = self.others.get(index)
        if parts is None:
            parts = self.others[index] = _ChoiceParts()
        return parts

    def done_event(self, *, provider: str, request: ChatRequest, start: float, end: float) -> StreamEvent:
        choices: tuple[Choice, ...] = ()
        if self.others:
            choices = (self.choice(0), *(parts.choice(i) for i, parts in sorted(self.others.items())))
        result = build_result(
            provider=provider,
            request=request,
            text="".join(self.parts),
            finish_reason=self.finish_reason,
            tool_calls=self.tool_calls(),
            usage=self.usage,
            model=self.model,
            start=start,
            first_token_at=self.first_token_at,
            end=end,
            logprobs=self.logprobs,
            refusal="".join(self.refusal) or None,
            system_fingerprint=self.system_fingerprint,
            choices=choices,
        )
        return StreamEvent(type="done", finish_reason=self.finish_reason, result=result)
