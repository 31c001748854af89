"""``/api/v1/generate`` (JSON and SSE) and the staff routing-configuration endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsStaff
from llm import LLMError
from spignosapi.api.asyncviews import async_endpoint, authenticate, dumps, json_body, validated
from spignosapi.api.errors import envelope, error_parts
from spignosapi.api.schema import SSE_EVENT

from . import gateway, selectors, services
from .errors import GatewayError
from .models import Strategy
from .selectors import AliasInfo, routing_config
from .serializers import AliasInput, CategoryInput, GenerateInput, GenerateOutput, ModelMappingInput

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: Any) -> str:
    return f"data: {dumps(data)}\n\n"


def stream_error_payload(exc: LLMError | GatewayError) -> dict[str, Any]:
    """The error a stream that broke off after its first token ends with (its status was sent already)."""
    if isinstance(exc, GatewayError):
        parts = error_parts(exc)
        assert parts is not None  # a ServiceError always has its envelope
        return dict(parts[0]["error"])
    return dict(envelope(f"The upstream stream failed: {exc}", status_code=502, code=exc.code)["error"])


async def _generate(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    data = validated(GenerateInput, json_body(request))
    request_id = request.request_id  # type: ignore[attr-defined]
    return await serve_generation(gateway.generation_call(data, key=key, request_id=request_id, endpoint="generate"))


async def serve_generation(call: gateway.Call, *, extra: dict[str, Any] | None = None) -> HttpResponseBase:
    """Answer ``call``: ``{"output", **extra, "meta"}``, or SSE when it streams.

    A stream starts with one ``{"type": <key>, <key>: value}`` event per item of ``extra`` (RAG's sources).
    """
    if call.stream:
        return await _generate_stream(call, extra or {})
    completion = await gateway.complete(call)
    return JsonResponse(
        {"output": completion.result.text, **(extra or {}), "meta": completion.meta},
        json_dumps_params={"ensure_ascii": False},
    )


async def _generate_stream(call: gateway.Call, extra: dict[str, Any]) -> HttpResponseBase:
    stream = gateway.streaming(call)
    await stream.start()  # errors before any token are plain HTTP errors

    async def body() -> AsyncIterator[str]:
        try:
            async with stream:
                for name, value in extra.items():
                    yield sse({"type": name, name: value})
                async for event in stream:
                    if event.type == "delta" and event.content:
                        # sse({"type": "chunk", "content": ...}), without encoding the constant part each time
                        yield f'data: {{"type":"chunk","content":{dumps(event.content)}}}\n\n'
        except (LLMError, GatewayError) as exc:
            yield sse({"type": "error", "error": stream_error_payload(exc)})
            return
        yield sse({"type": "complete", "meta": stream.meta})

    return StreamingHttpResponse(body(), content_type="text/event-stream", headers=SSE_HEADERS)


class GenerateView(APIView):
    """Schema of ``POST /api/v1/generate`` (served by the async view below)."""

    @extend_schema(
        operation_id="generate",
        summary="Generate text (routed, with fallbacks)",
        request=GenerateInput,
        responses={(200, "application/json"): GenerateOutput, (200, "text/event-stream"): SSE_EVENT},
        examples=[
            OpenApiExample(
                "Code question", value={"prompt": "Fix this python function", "max_tokens": 128}, request_only=True
            ),
        ],
        description='With `stream: true` the answer is `text/event-stream`: `data: {"type":"chunk",...}` '
        'events, then `{"type":"complete","meta":{...}}` or `{"type":"error","error":{...}}`.',
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


generate_view = async_endpoint(GenerateView, {"POST": _generate})


# --- routing configuration (staff) -------------------------------------------------------------------


def config_payload() -> dict[str, Any]:
    config = routing_config.get()
    # Each provider's grid intensity and PUE as the carbon strategy uses them (the defaults resolved).
    carbon = {name: {"grid_gco2e_per_kwh": grid, "pue": pue} for name, (grid, pue) in config.carbon.items()}
    return {
        "mode": settings.ROUTING_MODE,
        "modes": list(settings.ROUTING_MODES),
        "default_category": settings.ROUTING_DEFAULT_CATEGORY,
        "strategies": list(Strategy.values),
        "latency_figures": {
            "max_age_s": settings.ROUTING_LATENCY_MAX_AGE_S,
            "min_samples": settings.ROUTING_LATENCY_MIN_SAMPLES,
        },
        "classifier_model": settings.ROUTING_CLASSIFIER_MODEL,
        "embedding_model": settings.ROUTING_EMBEDDING_MODEL,
        "demo_only": config.demo_only,
        "categories": [
            {
                "name": c.name,
                "description": c.description,
                "keywords": list(c.keywords),
                "models": list(c.chain),
                "examples": list(c.examples),
                "builtin": c.builtin,
                "strategy": c.strategy,
            }
            for c in sorted(config.categories.values(), key=lambda c: c.name)
        ],
        "models": sorted(config.models),
        "aliases": aliases_payload(),
        "providers": [
            {
                "name": p.name,
                "kind": p.kind,
                "base_url": p.safe_base_url,
                "has_api_key": bool(p.api_key),
                **carbon.get(p.name, {}),
            }
            for p in sorted(config.providers.values(), key=lambda p: p.name)
        ],
        "circuit_breaker": {
            "failure_threshold": settings.BREAKER_FAILURE_THRESHOLD,
            "open_seconds": settings.BREAKER_OPEN_SECONDS,
        },
    }


def alias_payload(alias: AliasInfo) -> dict[str, Any]:
    return {"name": alias.name, "target": alias.target, "kind": alias.kind}


def aliases_payload() -> list[dict[str, Any]]:
    return [alias_payload(alias) for _, alias in sorted(routing_config.get().aliases.items())]


def category_payload(name: str) -> dict[str, Any]:
    info = routing_config.get().categories[name]
    return {
        "name": info.name,
        "description": info.description,
        "keywords": list(info.keywords),
        "models": list(info.chain),
        "examples": list(info.examples),
        "builtin": info.builtin,
        "strategy": info.strategy,
    }


class RoutingConfigView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(summary="Routing configuration (no secrets)", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(config_payload())


class CategoriesView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(summary="Create or update a category", request=CategoryInput, responses={200: dict, 201: dict})
    def post(self, request: Request) -> Response:
        data = CategoryInput(data=request.data)
        data.is_valid(raise_exception=True)
        category, created = services.category_upsert(**data.validated_data)
        return Response(category_payload(category.name), status=201 if created else 200)


class CategoryDetailView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(summary="Delete a category (built-in ones answer 409)", responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        services.category_delete(name=name)
        return Response(status=204)


class ModelMappingView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(summary="Set a category's ordered model chain", request=ModelMappingInput, responses={200: dict})
    def post(self, request: Request) -> Response:
        data = ModelMappingInput(data=request.data)
        data.is_valid(raise_exception=True)
        category = services.model_mapping_set(**data.validated_data)
        return Response(category_payload(category.name))


ALIAS_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "name": serializers.CharField(),
    "target": serializers.CharField(help_text="a category's name or a model id"),
    "kind": serializers.ChoiceField(choices=["category", "model"]),
}
AliasOutput = inline_serializer("AliasOutput", ALIAS_FIELDS)
AliasList = inline_serializer("AliasList", {"aliases": inline_serializer("AliasRow", ALIAS_FIELDS, many=True)})


class AliasesView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Model aliases: client-facing model names → a category or a model",
        responses={200: AliasList},
    )
    def get(self, request: Request) -> Response:
        return Response({"aliases": aliases_payload()})

    @extend_schema(
        summary="Create or update a model alias (409 when its name is a category's or a model's)",
        request=AliasInput,
        responses={200: AliasOutput, 201: AliasOutput},
    )
    def post(self, request: Request) -> Response:
        data = AliasInput(data=request.data)
        data.is_valid(raise_exception=True)
        alias, created = services.alias_upsert(**data.validated_data)
        return Response(alias_payload(selectors.alias_info(alias)), status=201 if created else 200)


class AliasDetailView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(summary="Delete a model alias", responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        services.alias_delete(name=name)
        return Response(status=204)


BreakerList = inline_serializer(
    "BreakerList",
    {
        "circuit_breakers": inline_serializer(
            "BreakerRow",
            {
                "model": serializers.CharField(),
                "state": serializers.ChoiceField(choices=["closed", "open", "half_open"]),
                "consecutive_failures": serializers.IntegerField(),
                "opened_at": serializers.FloatField(allow_null=True, help_text="Unix time"),
                "last_error": serializers.CharField(),
            },
            many=True,
        )
    },
)


class BreakersView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(summary="Circuit breakers", responses={200: BreakerList})
    def get(self, request: Request) -> Response:
        return Response({"circuit_breakers": selectors.breaker_rows()})


class BreakerResetView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(summary="Close a model's breaker", request=None, responses={200: dict})
    def post(self, request: Request, model: str) -> Response:
        services.breaker_reset(model=services.model_by_id(model))
        return Response({"model": model, "state": "closed"})
