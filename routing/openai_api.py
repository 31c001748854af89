"""The OpenAI-compatible front door: ``/v1/chat/completions``, ``/v1/models`` (drop-in for the SDKs).

``model`` = ``router``/``auto`` → routed; a category name → that category's chain; a concrete model id →
that model (still behind its breaker). The response's ``model`` is the model that answered, and the
``X-Spignos-Route`` header tells ``category/model/attempts``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from llm import GenerationResult, LLMError
from spignosapi.api.asyncviews import async_endpoint, authenticate, dumps, json_body, validated
from spignosapi.api.errors import ApiError, NotFound, envelope
from spignosapi.api.schema import SSE_EVENT

from . import gateway
from .api import SSE_HEADERS, error_code, error_payload
from .router import ROUTER_ALIASES
from .selectors import routing_config
from .serializers import ChatCompletionInput


def _route_header(prepared: gateway.Prepared, model_id: str | None) -> str:
    return f"{prepared.route.category or '-'}/{model_id or '-'}/{len(prepared.attempts)}"


def _usage(result: GenerationResult) -> dict[str, int]:
    u = result.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


def _message(result: GenerationResult) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.text if result.text or not result.tool_calls else None,
    }
    if result.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in result.tool_calls
        ]
    return message


async def _chat(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    data = validated(ChatCompletionInput, json_body(request))
    model = data["model"]
    max_tokens = data.get("max_completion_tokens") or data.get("max_tokens") or 256
    call = gateway.Call(
        key=key,
        request_id=request.request_id,  # type: ignore[attr-defined]
        endpoint="chat.completions",
        messages=data["messages"],
        temperature=1.0 if data.get("temperature") is None else data["temperature"],
        top_p=1.0 if data.get("top_p") is None else data["top_p"],
        max_tokens=max_tokens,
        stop=data.get("stop"),
        tools=data.get("tools"),
        tool_choice=data.get("tool_choice"),
        user_id=data.get("user") or "",
        model=None if model in ROUTER_ALIASES else model,
        stream=bool(data.get("stream")),
    )
    prepared = await gateway.prepare(call, request)
    completion_id = f"chatcmpl-{call.request_id}"
    created = int(time.time())
    if call.stream:
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        return await _chat_stream(prepared, completion_id, created, include_usage)
    try:
        result, model_id = await gateway.generate(prepared)
    except ApiError as exc:
        await gateway.finish(
            prepared, gateway.build_meta(prepared, None, None), status="error", error_code=error_code(exc)
        )
        raise
    meta = gateway.build_meta(prepared, result, model_id)
    await gateway.finish(prepared, meta)
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model_id,
        "choices": [
            {"index": 0, "message": _message(result), "finish_reason": result.finish_reason or "stop", "logprobs": None}
        ],
        "usage": _usage(result),
        "system_fingerprint": None,
    }
    response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
    response["X-Spignos-Route"] = _route_header(prepared, model_id)
    # What /api/v1/generate reports in its meta; headers, because the OpenAI body has no place for them.
    for header, name in (("Cost-USD", "cost_usd"), ("Energy-Wh", "energy_wh"), ("CO2e-g", "co2e_g")):
        response[f"X-Spignos-{header}"] = repr(meta[name])
    return response


_DELTA, _FINISH = "\x00delta\x00", "\x00finish\x00"


def _chunk_template(completion_id: str, created: int, model_id: str) -> tuple[str, str, str]:
    """The encoded chunk around its delta and finish_reason: (before delta, between, after finish_reason)."""
    encoded = dumps(
        {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": _DELTA, "logprobs": None, "finish_reason": _FINISH}],
        }
    )
    head, _, rest = encoded.partition(dumps(_DELTA))
    middle, _, tail = rest.partition(dumps(_FINISH))
    return head, middle, tail


async def _chat_stream(
    prepared: gateway.Prepared, completion_id: str, created: int, include_usage: bool
) -> HttpResponseBase:
    events = gateway.stream(prepared)
    try:
        start = await events.__anext__()
    except ApiError as exc:
        await gateway.finish(
            prepared, gateway.build_meta(prepared, None, None), status="error", error_code=error_code(exc)
        )
        raise
    except asyncio.CancelledError:  # the client left while the chain was still looking for a first token
        meta = gateway.build_meta(prepared, None, None)
        await gateway.finish(prepared, meta, status="cancelled", error_code="client_disconnected")
        raise
    assert isinstance(start, gateway.StreamStart)
    model_id = start.model_id

    # Every chunk is this object with its own delta and finish_reason: encode the rest once. (A JSON
    # object's encoding is the concatenation of its members' encodings, so the bytes are the same.)
    head, middle, tail = _chunk_template(completion_id, created, model_id)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        return f"data: {head}{dumps(delta)}{middle}{dumps(finish_reason)}{tail}\n\n"

    async def body() -> AsyncIterator[str]:
        result: GenerationResult | None = None
        sent: list[str] = []  # content and tool arguments relayed so far
        first = True
        try:
            async for event in events:
                if isinstance(event, gateway.StreamStart):
                    continue
                if event.type == "delta":
                    delta: dict[str, Any] = {}
                    if first:
                        delta["role"] = "assistant"
                        first = False
                    if event.content:
                        delta["content"] = event.content
                    if event.tool_calls:
                        delta["tool_calls"] = [
                            {
                                "index": t.index,
                                **({"id": t.id, "type": "function"} if t.id else {}),
                                "function": {**({"name": t.name} if t.name else {}), "arguments": t.arguments},
                            }
                            for t in event.tool_calls
                        ]
                    if delta:
                        sent.append(event.content)
                        sent.extend(t.arguments for t in event.tool_calls)
                        yield chunk(delta)
                elif event.type == "done":
                    result = event.result
            await gateway.finish(prepared, gateway.build_meta(prepared, result, model_id))
        except (LLMError, ApiError) as exc:
            meta = gateway.build_meta(prepared, result or gateway.partial_result(prepared, model_id, sent), model_id)
            await gateway.finish(prepared, meta, status="error", error_code=getattr(exc, "code", "error"))
            payload = (
                error_payload(exc)
                if isinstance(exc, ApiError)
                else envelope(f"The upstream stream failed: {exc}", status_code=502, code=exc.code)["error"]
            )
            yield f"data: {dumps({'error': payload})}\n\n"
            return
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away mid-stream (cancelled while waiting on the upstream, or closed at a
            # yield): stop reading the upstream and book what was produced until then.
            await events.aclose()
            meta = gateway.build_meta(prepared, result or gateway.partial_result(prepared, model_id, sent), model_id)
            await gateway.finish(prepared, meta, status="cancelled", error_code="client_disconnected")
            raise
        finish_reason = (result.finish_reason if result else None) or "stop"
        yield chunk({}, finish_reason)
        if include_usage and result is not None:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_id,
                "system_fingerprint": None,
                "choices": [],
                "usage": _usage(result),
            }
            yield f"data: {dumps(payload)}\n\n"
        yield "data: [DONE]\n\n"

    response = StreamingHttpResponse(body(), content_type="text/event-stream", headers=SSE_HEADERS)
    response["X-Spignos-Route"] = f"{prepared.route.category or '-'}/{model_id}/{len(prepared.attempts) + 1}"
    return response


class ChatCompletionsView(APIView):
    """Schema of ``POST /v1/chat/completions`` (served by the async view below)."""

    @extend_schema(
        operation_id="chat_completions",
        summary="OpenAI-compatible chat completion",
        request=ChatCompletionInput,
        responses={(200, "application/json"): dict, (200, "text/event-stream"): SSE_EVENT},
        description="OpenAI request/response and SSE chunk formats. `model`: `router`/`auto` (routed), a category "
        "name, or a concrete `<provider>/<model>` id. Header `X-Spignos-Route`: `category/model/attempts`.",
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


chat_completions_view = async_endpoint(ChatCompletionsView, {"POST": _chat})


@extend_schema(exclude=True)  # the same operation as /v1/chat/completions, documented once
class ChatCompletionsAliasView(APIView):
    pass


chat_completions_alias_view = async_endpoint(ChatCompletionsAliasView, {"POST": _chat})


def _model_entries() -> dict[str, dict[str, Any]]:
    """What ``GET /v1/models`` lists, by id: the router aliases, the categories, then the concrete models."""
    config = routing_config.get()
    entries = {alias: _model_entry(alias, "spignosapi") for alias in ("router", "auto")}
    entries.update((name, _model_entry(name, "spignosapi")) for name in sorted(config.categories))
    models = sorted(config.models.items())
    entries.update((model_id, _model_entry(model_id, info.provider)) for model_id, info in models)
    return entries


def _model_entry(model_id: str, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owned_by}


def models_payload() -> dict[str, Any]:
    return {"object": "list", "data": list(_model_entries().values())}


async def _models(request: HttpRequest) -> HttpResponseBase:
    await authenticate(request)
    from asgiref.sync import sync_to_async

    return JsonResponse(await sync_to_async(models_payload, thread_sensitive=False)())


async def _model(request: HttpRequest, model: str) -> HttpResponseBase:
    await authenticate(request)
    from asgiref.sync import sync_to_async

    entry = (await sync_to_async(_model_entries, thread_sensitive=False)()).get(model)
    if entry is None:
        raise NotFound(f"The model {model!r} does not exist.", code="model_not_found", param="model")
    return JsonResponse(entry)


class ModelsView(APIView):
    @extend_schema(
        operation_id="list_models", summary="Models: router, categories and concrete models", responses={200: dict}
    )
    def get(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


class ModelView(APIView):
    @extend_schema(
        operation_id="retrieve_model",
        summary="One model of the list: router, a category or a concrete model (404 model_not_found otherwise)",
        responses={200: dict},
    )
    def get(self, request: Request, model: str) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


models_view = async_endpoint(ModelsView, {"GET": _models})
model_view = async_endpoint(ModelView, {"GET": _model})
