"""Spans of the gateway path — the routing decision and each call to a model — when tracing is on.

With tracing off (``spignosapi.tracing.tracer`` is None) ``routing()`` and ``attempt()`` return one shared
object whose methods do nothing: the gateway pays a function call, and OpenTelemetry is never imported.

The spans are children of the current span (the request's server span, or the worker's task span) but are
never made current themselves: an attempt span lives across the ``yield``s of ``gateway.Stream._relay``, where a
context attached in the generator would leak into its caller's. Attributes hold names, counts and error
codes, never the messages, the output or an upstream's error text (which may quote a credential).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Any

from spignosapi import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from llm import GenerationResult, LLMError

    from .gateway import Call, Prepared
    from .router import Route


class _Off:
    """Tracing is off: every method is a no-op."""

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def chosen(self, route: Route) -> None:
        pass

    def ok(self, result: GenerationResult | None) -> None:
        pass

    def failed(self, error: LLMError) -> None:
        pass


OFF = _Off()


class _Routing:
    """``gateway.route``: which category, chosen how, and the chain of models it gives."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> _Routing:
        return self

    def chosen(self, route: Route) -> None:
        self.span.set_attributes(
            {
                "spignos.route.category": route.category,
                "spignos.route.mode": route.route_mode,
                "spignos.route.chain": list(route.chain),
            }
        )

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None:
            _set_error(self.span, _code_of(exc))
        self.span.end()


class _Attempt:
    """``chat <model>``: one call to one model, and how it ended (ok, error, or cancelled)."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.ended = False

    def __enter__(self) -> _Attempt:
        return self

    def ok(self, result: GenerationResult | None) -> None:
        attributes: dict[str, Any] = {"spignos.outcome": "ok"}
        if result is not None:
            attributes["gen_ai.usage.input_tokens"] = result.usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = result.usage.completion_tokens
            if result.finish_reason:
                attributes["gen_ai.response.finish_reasons"] = [result.finish_reason]
        self._end(attributes)

    def failed(self, error: LLMError) -> None:
        attributes: dict[str, Any] = {"spignos.outcome": "error", "spignos.error.retryable": error.retryable}
        if error.status_code:
            attributes["spignos.error.status_code"] = error.status_code
        _set_error(self.span, error.code)
        self._end(attributes)

    def _end(self, attributes: dict[str, Any]) -> None:
        if not self.ended:
            self.ended = True
            self.span.set_attributes(attributes)
            self.span.end()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.ended:
            return
        if exc is None or isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
            self._end({"spignos.outcome": "cancelled"})  # the caller went away before the model finished
        else:
            _set_error(self.span, _code_of(exc))
            self._end({"spignos.outcome": "error"})


def routing(call: Call, mode: str) -> _Routing | _Off:
    """Around choosing the route of ``call`` (``mode``: the routing mode asked for)."""
    tracer = tracing.tracer
    if tracer is None:
        return OFF
    span = tracer.start_span(
        "gateway.route",
        attributes={
            "spignos.request_id": call.request_id,
            "spignos.endpoint": call.endpoint,
            "spignos.route.requested_mode": mode,
        },
    )
    return _Routing(span)


def attempt(prepared: Prepared, model_id: str) -> _Attempt | _Off:
    """Around one call to ``model_id`` (before its outcome is appended to ``prepared.attempts``)."""
    tracer = tracing.tracer
    if tracer is None:
        return OFF
    from opentelemetry.trace import SpanKind

    info = prepared.config.models[model_id]
    called = sum(1 for a in prepared.attempts if a["outcome"] in ("ok", "error"))
    span = tracer.start_span(
        f"chat {model_id}",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": info.provider,
            "gen_ai.request.model": info.name,
            "spignos.model": model_id,
            "spignos.attempt": called + 1,
            # Not the chain's first choice: the ones before it failed or were skipped (breaker, budget).
            "spignos.fallback": model_id != prepared.route.chain[0],
            "spignos.stream": prepared.call.stream,
        },
    )
    return _Attempt(span)


def _code_of(exc: BaseException) -> str:
    from llm import LLMError
    from spignosapi.api.errors import ApiError
    from spignosapi.errors import ServiceError

    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, ApiError):
        return str(exc.get_codes())
    if isinstance(exc, LLMError):
        return exc.code
    return type(exc).__name__


def _set_error(span: Span, code: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", code)
    span.set_status(Status(StatusCode.ERROR, code))
