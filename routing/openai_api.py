"""The OpenAI-compatible front door: ``/v1/chat/completions``, ``/v1/models`` (drop-in for the SDKs).

``model`` = ``router``/``auto`` → routed; a category name → that category's chain; a concrete model id →
that model (still behind its breaker); a model alias → its category or model. The response's ``model``
is the model that answered, and the ``X-Spignos-Route`` header tells ``category/model/attempts``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import KeyInfo
from llm import Choice, GenerationResult, LLMError, StreamEvent, ToolCall
from spignosapi.api.asyncviews import async_endpoint, authenticate, dumps, json_body, validated
from spignosapi.api.errors import NotFound
from spignosapi.api.schema import SSE_EVENT

from . import gateway
from .access import model_allowed, not_allowed, restricts
from .api import SSE_HEADERS, stream_error_payload
from .errors import GatewayError
from .router import ROUTER_ALIASES
from .selectors import RoutingConfig, routing_config
from .serializers import ChatCompletionInput, ChatCompletionSchema, chat_params


def _route_header(category: str, model_id: str, attempts: int) -> str:
    return f"{category or '-'}/{model_id}/{attempts}"


def _usage(result: GenerationResult) -> dict[str, int]:
    u = result.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


def _message(text: str, tool_calls: tuple[ToolCall, ...], refusal: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        # A refusal, or tool calls, and no text: no content (as OpenAI's).
        "content": text if text or not (tool_calls or refusal) else None,
        "refusal": refusal,
    }
    if tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in tool_calls
        ]
    return message


def _choices(result: GenerationResult) -> list[dict[str, Any]]:
    """OpenAI's ``choices``: every choice the model gave (``n``), each with its logprobs as received."""
    choices: tuple[Choice, ...] = result.choices or (
        Choice(0, result.text, result.finish_reason, result.tool_calls, result.logprobs, result.refusal),
    )
    return [
        {
            "index": c.index,
            "message": _message(c.text, c.tool_calls, c.refusal),
            "logprobs": c.logprobs,
            "finish_reason": c.finish_reason or "stop",
        }
        for c in choices
    ]


def chat_call(
    data: dict[str, Any], *, key: KeyInfo, request_id: str, params: dict[str, Any] | None = None
) -> gateway.Call:
    """The gateway call of a body validated by ``ChatCompletionInput``; ``params``: its other fields
    (``serializers.chat_params``)."""
    model = data["model"]
    return gateway.Call(
        key=key,
        request_id=request_id,
        endpoint="chat.completions",
        messages=data["messages"],
        temperature=1.0 if data.get("temperature") is None else data["temperature"],
        top_p=1.0 if data.get("top_p") is None else data["top_p"],
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens") or 256,
        stop=data.get("stop"),
        tools=data.get("tools"),
        tool_choice=data.get("tool_choice"),
        user_id=data.get("user") or "",
        model=None if model in ROUTER_ALIASES else model,
        stream=bool(data.get("stream")),
        params=params or {},
    )


async def _chat(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    body = json_body(request)
    data = validated(ChatCompletionInput, body)
    params = chat_params(body)
    call = chat_call(data, key=key, request_id=request.request_id, params=params)  # type: ignore[attr-defined]
    completion_id = f"chatcmpl-{call.request_id}"
    created = int(time.time())
    if call.stream:
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        return await _chat_stream(call, completion_id, created, include_usage)
    completion = await gateway.complete(call)
    result = completion.result
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": completion.model_id,
        "choices": _choices(result),
        "usage": _usage(result),
        "system_fingerprint": result.system_fingerprint,
    }
    response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
    response["X-Spignos-Route"] = _route_header(completion.category, completion.model_id, completion.attempts)
    # What /api/v1/generate reports in its meta; headers, because the OpenAI body has no place for them.
    for header, name in (("Cost-USD", "cost_usd"), ("Energy-Wh", "energy_wh"), ("CO2e-g", "co2e_g")):
        response[f"X-Spignos-{header}"] = repr(completion.meta[name])
    return response


_DELTA, _FINISH = "\x00delta\x00", "\x00finish\x00"


def _chunk_template(completion_id: str, created: int, model_id: str, fingerprint: str | None) -> tuple[str, str, str]:
    """The encoded chunk around its delta and finish_reason: (before delta, between, after finish_reason)."""
    encoded = dumps(
        {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "delta": _DELTA, "logprobs": None, "finish_reason": _FINISH}],
        }
    )
    head, _, rest = encoded.partition(dumps(_DELTA))
    middle, _, tail = rest.partition(dumps(_FINISH))
    return head, middle, tail


# The delta of a choice's first chunk, before any of its text: OpenAI opens every streamed choice with it
# (routing/tests/fixtures/openai_chat_stream.sse), whatever the backend, and some clients expect it.
OPENING_DELTA: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}


def _delta(event: StreamEvent) -> dict[str, Any]:
    """An OpenAI chunk's ``delta`` for ``event`` (empty when there is nothing to relay)."""
    delta: dict[str, Any] = {}
    if event.content:
        delta["content"] = event.content
    if event.refusal:
        delta["refusal"] = event.refusal
    if event.tool_calls:
        delta["tool_calls"] = [
            {
                "index": t.index,
                **({"id": t.id, "type": "function"} if t.id else {}),
                "function": {**({"name": t.name} if t.name else {}), "arguments": t.arguments},
            }
            for t in event.tool_calls
        ]
    return delta


class _ChunkWriter:
    """The chunks of one streamed completion, as OpenAI writes them.

    The common chunk (the first choice, no logprobs) is the template's bytes around its delta and
    finish_reason, encoded once: a JSON object's encoding is the concatenation of its members' encodings,
    so the bytes are the same as a whole ``dumps``. The template waits for the first event, which tells
    the upstream's ``system_fingerprint``. Other choices (``n``) and chunks with logprobs are encoded whole.
    """

    def __init__(self, completion_id: str, created: int, model_id: str) -> None:
        self.completion_id, self.created, self.model_id = completion_id, created, model_id
        self.fingerprint: str | None = None
        self._template: tuple[str, str, str] | None = None
        self._opened: set[int] = set()  # the choices whose opening chunk (OPENING_DELTA) was sent

    def template(self) -> tuple[str, str, str]:
        if self._template is None:
            self._template = _chunk_template(self.completion_id, self.created, self.model_id, self.fingerprint)
        return self._template

    def opening(self, index: int) -> str:
        """The choice's opening chunk, unless it was sent ("")."""
        if index in self._opened:
            return ""
        self._opened.add(index)
        if index == 0:
            return self.chunk(OPENING_DELTA)
        return self.whole([{"index": index, "delta": OPENING_DELTA, "logprobs": None, "finish_reason": None}])

    def event(self, event: StreamEvent) -> str | None:
        """The chunk of a delta event (after its choice's opening chunk); None when it carries nothing."""
        if self._template is None and event.system_fingerprint:
            self.fingerprint = event.system_fingerprint
        delta = _delta(event)
        if not delta and event.logprobs is None:
            return None
        opening = self.opening(event.index)
        if event.index == 0 and event.logprobs is None:  # the common chunk: the per-token path
            head, middle, tail = self._template or self.template()
            return f"{opening}data: {head}{dumps(delta)}{middle}null{tail}\n\n"
        choice = {"index": event.index, "delta": delta, "logprobs": event.logprobs, "finish_reason": None}
        return opening + self.whole([choice])

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        head, middle, tail = self.template()
        return f"data: {head}{dumps(delta)}{middle}{dumps(finish_reason)}{tail}\n\n"

    def whole(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        payload = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
            **extra,
        }
        return f"data: {dumps(payload)}\n\n"

    def finish(self, result: GenerationResult | None) -> list[str]:
        """The last chunk of each choice, with its finish_reason."""
        if self.fingerprint is None and result is not None:
            self.fingerprint = result.system_fingerprint
        if result is None or not result.choices:
            closing = self.chunk({}, (result.finish_reason if result else None) or "stop")
            return [self.opening(0) + closing]
        # A choice that said nothing opens too.
        return [
            self.opening(c.index)
            + self.whole(
                [{"index": c.index, "delta": {}, "logprobs": None, "finish_reason": c.finish_reason or "stop"}]
            )
            for c in result.choices
        ]


async def _chat_stream(call: gateway.Call, completion_id: str, created: int, include_usage: bool) -> HttpResponseBase:
    stream = gateway.streaming(call)
    await stream.start()  # errors before any token are plain HTTP errors
    model_id = stream.model_id
    writer = _ChunkWriter(completion_id, created, model_id)

    async def body() -> AsyncIterator[str]:
        try:
            async with stream:
                async for event in stream:
                    if event.type == "delta":
                        chunk = writer.event(event)
                        if chunk is not None:
                            yield chunk
        except (LLMError, GatewayError) as exc:
            yield f"data: {dumps({'error': stream_error_payload(exc)})}\n\n"
            return
        result = stream.result
        for chunk in writer.finish(result):
            yield chunk
        if include_usage and result is not None:
            yield writer.whole([], usage=_usage(result))
        yield "data: [DONE]\n\n"

    response = StreamingHttpResponse(body(), content_type="text/event-stream", headers=SSE_HEADERS)
    response["X-Spignos-Route"] = _route_header(stream.category, model_id, stream.attempts)
    return response


class ChatCompletionsView(APIView):
    """Schema of ``POST /v1/chat/completions`` (served by the async view below)."""

    @extend_schema(
        operation_id="chat_completions",
        summary="OpenAI-compatible chat completion",
        request=ChatCompletionSchema,
        responses={(200, "application/json"): dict, (200, "text/event-stream"): SSE_EVENT},
        description="OpenAI request/response and SSE chunk formats. `model`: `router`/`auto` (routed), a category "
        "name, a concrete `<provider>/<model>` id or a model alias. "
        "Header `X-Spignos-Route`: `category/model/attempts`.",
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


chat_completions_view = async_endpoint(ChatCompletionsView, {"POST": _chat})


@extend_schema(exclude=True)  # the same operation as /v1/chat/completions, documented once
class ChatCompletionsAliasView(APIView):
    pass


chat_completions_alias_view = async_endpoint(ChatCompletionsAliasView, {"POST": _chat})


def _model_entries(key: KeyInfo | None = None) -> dict[str, dict[str, Any]]:
    """What ``GET /v1/models`` lists, by id: the router, the categories, the model aliases that lead somewhere
    (not those naming a disabled model), then the concrete models; for a ``key`` with an allow-list, only
    those that lead to a model it may use."""
    config = routing_config.get()
    entries = {alias: _model_entry(alias, "spignosapi") for alias in ("router", "auto")}
    entries.update((name, _model_entry(name, "spignosapi")) for name in sorted(config.categories))
    entries.update(
        (name, _model_entry(name, "spignosapi"))
        for name, alias in sorted(config.aliases.items())
        if alias.category in config.categories or alias.model in config.models
    )
    models = sorted(config.models.items())
    entries.update((model_id, _model_entry(model_id, info.provider)) for model_id, info in models)
    if restricts(key):
        entries = {name: entry for name, entry in entries.items() if _leads_to_allowed(key, name, config)}
    return entries


def _leads_to_allowed(key: KeyInfo | None, name: str, config: RoutingConfig) -> bool:
    """Does the listed name ``name`` lead to a model ``key`` may use? (The router always may: it is refused
    per request, when the chain it picks has none.)"""
    if name in config.models:
        return model_allowed(key, name, config)
    alias = config.aliases.get(name) if name not in config.categories else None
    if alias is not None and alias.model is not None:
        return model_allowed(key, alias.model, config)
    category = config.categories.get(alias.category if alias is not None and alias.category else name)
    if category is None:
        return name in ROUTER_ALIASES
    return any(model_allowed(key, model_id, config) for model_id in category.chain)


def _model_entry(model_id: str, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owned_by}


def models_payload(key: KeyInfo | None = None) -> dict[str, Any]:
    return {"object": "list", "data": list(_model_entries(key).values())}


async def _models(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    from asgiref.sync import sync_to_async

    return JsonResponse(await sync_to_async(models_payload, thread_sensitive=False)(key))


async def _model(request: HttpRequest, model: str) -> HttpResponseBase:
    key = await authenticate(request)
    from asgiref.sync import sync_to_async

    entries = await sync_to_async(_model_entries, thread_sensitive=False)()
    if model not in entries:
        raise NotFound(f"The model {model!r} does not exist.", code="model_not_found", param="model")
    if not _leads_to_allowed(key, model, await routing_config.aget()):
        raise not_allowed(f"This API key may not use the model {model!r}.")
    return JsonResponse(entries[model])


class ModelsView(APIView):
    @extend_schema(
        operation_id="list_models",
        summary="Models: router, categories, model aliases and concrete models",
        responses={200: dict},
    )
    def get(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


class ModelView(APIView):
    @extend_schema(
        operation_id="retrieve_model",
        summary="One model of the list: router, a category, a model alias or a concrete model "
        "(else 404 model_not_found)",
        responses={200: dict},
    )
    def get(self, request: Request, model: str) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


models_view = async_endpoint(ModelsView, {"GET": _models})
model_view = async_endpoint(ModelView, {"GET": _model})
