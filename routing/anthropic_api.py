"""The Anthropic-compatible front door: ``/v1/messages`` and ``/v1/messages/count_tokens`` (drop-in for the
Anthropic SDKs and agent CLIs, base_url = ``http://host:8000``).

A thin door like ``openai_api``: the body is checked and translated to a ``gateway.Call``
(``anthropic_messages``), served by the gateway on any backend, and the answer translated back. ``model``
is routed as on the chat door (``router``/``auto``, a category, a concrete model id). The key comes in
``x-api-key`` (what the SDKs send) or ``Authorization: Bearer``; ``anthropic-version`` is accepted.

Every error on these routes is in Anthropic's envelope, ``{"type": "error", "error": {"type", "message"},
"request_id"}``, with the status the platform gives it everywhere else, so the SDK raises the class of that
status. The platform's 502 (every model failed), 503 (nothing can take the call now) and 504 (upstream
timeout) keep their statuses, typed ``api_error``, ``overloaded_error`` and ``timeout_error``: the SDK raises
``InternalServerError`` (its ``ServiceUnavailableError`` and ``GatewayTimeoutError`` subclasses for the last
two) and retries them, as it does Anthropic's own 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import KeyInfo
from llm import LLMError
from llm.providers.anthropic import NATIVE_FORMAT
from llm.types import NativeEvent
from spignosapi.api.asyncviews import AsyncHandler, authenticate, json_body
from spignosapi.api.errors import error_parts
from spignosapi.api.schema import SSE_EVENT

from . import gateway
from .access import allowed_route
from .anthropic_messages import (
    MessagesRequest,
    StreamEncoder,
    count_request_tokens,
    message_body,
    messages_request,
    sse,
)
from .api import SSE_HEADERS
from .errors import GatewayError, Reason
from .router import ROUTER_ALIASES, explicit_route
from .selectors import routing_config

logger = logging.getLogger(__name__)

# Anthropic's error type for each status the platform answers with (its own: 400, 401, 403, 404, 413, 429,
# 500, 504, 529); anything else of 4xx is a request it cannot take.
ERROR_TYPE_FOR_STATUS: Mapping[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    return ERROR_TYPE_FOR_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_payload(exc: Exception, request_id: str | None) -> tuple[dict[str, Any], int, dict[str, str]]:
    """(body, status, headers) of ``exc`` in Anthropic's envelope; the platform's own rendering says which
    status and message (an exception that is a bug: a 500, logged)."""
    parts = error_parts(exc)
    headers: dict[str, str] = {}
    if parts is None:
        logger.error("unhandled error", exc_info=exc)
        message, status = "Internal server error.", 500
    else:
        platform_body, status, headers = parts
        message = str(platform_body["error"]["message"])
    body: dict[str, Any] = {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body, status, headers


def error_response(exc: Exception, request_id: str | None) -> JsonResponse:
    body, status, headers = error_payload(exc, request_id)
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def messages_call(
    data: MessagesRequest, *, key: KeyInfo, request_id: str, body: Mapping[str, Any] | None = None
) -> gateway.Call:
    """The gateway call of a checked ``/v1/messages`` body; ``body`` itself rides along for an
    Anthropic-kind model to be sent as it came (``Call.native``)."""
    assert data.max_tokens is not None  # required on /v1/messages
    native = None if body is None else {NATIVE_FORMAT: {k: v for k, v in body.items() if k != "model"}}
    return gateway.Call(
        key=key,
        request_id=request_id,
        endpoint="messages",
        messages=data.messages,
        temperature=data.temperature,
        top_p=data.top_p,
        max_tokens=data.max_tokens,
        stop=data.stop,
        tools=data.tools,
        tool_choice=data.tool_choice,
        user_id=data.user_id,
        model=None if data.model in ROUTER_ALIASES else data.model,
        stream=data.stream,
        params=data.params,
        top_k=data.top_k,
        native=native,
    )


def _route_header(category: str, model_id: str, attempts: int) -> str:
    return f"{category or '-'}/{model_id}/{attempts}"


async def _messages(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    raw = json_body(request)
    data = messages_request(raw)
    call = messages_call(data, key=key, request_id=request.request_id, body=raw)  # type: ignore[attr-defined]
    message_id = f"msg_{call.request_id}"
    if call.stream:
        return await _stream(call, message_id)
    completion = await gateway.complete(call)
    result = completion.result
    if result.native is not None:  # an Anthropic model's own message (thinking blocks, cache usage, …)
        body = {**result.native, "id": message_id, "model": completion.model_id}
    else:
        body = message_body(message_id, completion.model_id, result, call.stop)
    response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
    response["X-Spignos-Route"] = _route_header(completion.category, completion.model_id, completion.attempts)
    for header, name in (("Cost-USD", "cost_usd"), ("Energy-Wh", "energy_wh"), ("CO2e-g", "co2e_g")):
        response[f"X-Spignos-{header}"] = repr(completion.meta[name])
    return response


async def _stream(call: gateway.Call, message_id: str) -> HttpResponseBase:
    stream = gateway.streaming(call)
    await stream.start()  # errors before any token are plain HTTP errors
    encoder = StreamEncoder(message_id, stream.model_id, stream.prompt_tokens, call.stop)

    async def body() -> AsyncIterator[str]:
        started = False
        try:
            async with stream:
                async for event in stream:
                    if event.native is not None:  # an Anthropic model's own events, relayed as they came
                        started = True
                        yield _native_events(event.native, message_id, stream.model_id)
                        continue
                    if not started:
                        started = True
                        yield encoder.start()
                    if event.type == "delta":
                        out = encoder.event(event)
                        if out:
                            yield out
                    else:
                        yield encoder.finish(event.result)
        except (LLMError, GatewayError) as exc:
            # The status was sent: Anthropic ends such a stream with an error event.
            if not started:
                yield encoder.start()
            payload, _, _ = error_payload(_stream_error(exc), call.request_id)
            yield sse("error", payload)

    response = StreamingHttpResponse(body(), content_type="text/event-stream", headers=SSE_HEADERS)
    response["X-Spignos-Route"] = _route_header(stream.category, stream.model_id, stream.attempts)
    return response


def _native_events(events: tuple[NativeEvent, ...], message_id: str, model_id: str) -> str:
    out = []
    for name, data in events:
        if name == "message_start":  # the message is the gateway's: its id and the model's id
            data = {**data, "message": {**data["message"], "id": message_id, "model": model_id}}
        out.append(sse(name, data))
    return "".join(out)


def _stream_error(exc: LLMError | GatewayError) -> Exception:
    if isinstance(exc, GatewayError):
        return exc
    # An upstream that broke off mid-stream: what the chat door reports as a 502 (Anthropic's overloaded
    # mid-stream errors are retryable the same way).
    return GatewayError(f"The upstream stream failed: {exc}", reason=Reason.UPSTREAM_FAILED, code=exc.code)


async def _count_tokens(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    data = messages_request(json_body(request), require_max_tokens=False)
    # The model must be one the gateway could route to (and the key use), as Anthropic refuses an unknown
    # model here too.
    config = await routing_config.aget()
    route = explicit_route(config, model=data.model, category=None)
    if route is not None:
        allowed_route(key, route, config)
    tokens = await sync_to_async(count_request_tokens, thread_sensitive=False)(data)
    return JsonResponse({"input_tokens": tokens})


def anthropic_endpoint(schema_view: type, handlers: dict[str, AsyncHandler]) -> Any:
    """An async view dispatching by method to ``handlers``, its errors in Anthropic's envelope (as
    ``spignosapi.api.asyncviews.async_endpoint`` does with the platform's)."""

    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        handler = handlers.get(request.method or "")
        try:
            if handler is None:
                raise exceptions.MethodNotAllowed(request.method or "")
            return await handler(request, *args, **kwargs)
        except Exception as exc:
            return error_response(exc, getattr(request, "request_id", None))

    view.cls = schema_view  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    return csrf_exempt(view)


# Anthropic's error envelope, documented on these routes in place of the platform's (spignosapi.api.schema).
ANTHROPIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"type": "string", "enum": ["error"]},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "description": "e.g. invalid_request_error, authentication_error"},
                "message": {"type": "string"},
            },
        },
        "request_id": {"type": "string"},
    },
}
ANTHROPIC_ERRORS: dict[Any, Any] = {(status, "application/json"): ANTHROPIC_ERROR_SCHEMA for status in ("4XX", "5XX")}


class MessagesView(APIView):
    """Schema of ``POST /v1/messages`` (served by the async view below)."""

    @extend_schema(
        operation_id="anthropic_messages",
        summary="Anthropic-compatible Messages API",
        request=dict,
        responses={(200, "application/json"): dict, (200, "text/event-stream"): SSE_EVENT, **ANTHROPIC_ERRORS},
        description="Anthropic's Messages request, response and stream event formats, on any backend. Key in "
        "`x-api-key` or `Authorization: Bearer`. `model`: `router`/`auto` (routed), a category name, or a "
        "concrete `<provider>/<model>` id. Errors in Anthropic's envelope `{type: error, error: {type, message}}`.",
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


class CountTokensView(APIView):
    @extend_schema(
        operation_id="anthropic_count_tokens",
        summary="Anthropic-compatible token count: {input_tokens}",
        request=dict,
        responses={(200, "application/json"): dict, **ANTHROPIC_ERRORS},
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


messages_view = anthropic_endpoint(MessagesView, {"POST": _messages})
count_tokens_view = anthropic_endpoint(CountTokensView, {"POST": _count_tokens})
