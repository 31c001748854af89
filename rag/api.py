"""``/api/v1/embeddings``, ``/v1/embeddings``, RAG collections and ``/api/v1/rag``."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import numpy as np
from asgiref.sync import sync_to_async
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import KeyInfo
from llm import count_tokens
from routing import limits
from routing.api import generation_call, serve_generation
from routing.selectors import routing_config
from spignosapi.api.asyncviews import async_endpoint, authenticate, json_body, validated
from spignosapi.api.errors import ApiError, InvalidRequest, NotFound
from spignosapi.api.schema import SSE_EVENT

from . import services
from .batches import batch_payload, batch_submit
from .embedding import aembed, embedding_model
from .models import Collection, EmbeddingBatch
from .serializers import (
    BatchInput,
    BatchOutput,
    CollectionList,
    CollectionOutput,
    EmbeddingsInput,
    EmbeddingsOutput,
    IngestInput,
    IngestOutput,
    RagInput,
    RagOutput,
)
from .usage import embedding_usage_book


def _json(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": False})


def embedding_rows(vectors: np.ndarray, encoding_format: str) -> list[dict[str, Any]]:
    """OpenAI's ``data``: a list of floats per input, or base64 of its float32 bytes (what the SDK asks for)."""
    rows: list[dict[str, Any]] = []
    for i, vector in enumerate(vectors):
        value: Any = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            if encoding_format == "base64"
            else [float(x) for x in vector]
        )
        rows.append({"object": "embedding", "index": i, "embedding": value})
    return rows


async def _embeddings(request: HttpRequest, endpoint: str) -> HttpResponseBase:
    started = time.perf_counter()
    key = await authenticate(request)
    data = validated(EmbeddingsInput, json_body(request))
    texts: list[str] = data["input"]
    config = await routing_config.aget()
    info = embedding_model(config, data.get("model"))
    estimate = sum(count_tokens(t) for t in texts)
    admitted = await limits.admit_key(key, prompt_tokens=estimate, max_tokens=0)
    request_id = request.request_id  # type: ignore[attr-defined]
    book = {"key_id": key.id, "request_id": request_id, "endpoint": endpoint, "model_id": info.model_id}
    try:
        embedded = await aembed(texts, info.model_id, config=config)
    except BaseException as exc:
        limits.settle_tokens_soon(admitted.reservation, 0)  # as booked: a failed call used nothing
        if isinstance(exc, ApiError):
            error = str(exc.get_codes())
            embedding_usage_book(**book, tokens=0, started=started, user=data.get("user", ""), error=error)
        raise
    # The key's tokens are what the model counted, as the usage record books them.
    limits.settle_tokens_soon(admitted.reservation, embedded.prompt_tokens)
    embedding_usage_book(**book, tokens=embedded.prompt_tokens, started=started, user=data.get("user", ""), error="")
    rows = embedding_rows(embedded.vectors, data["encoding_format"])
    usage = {"prompt_tokens": embedded.prompt_tokens, "total_tokens": embedded.prompt_tokens}
    return _json({"object": "list", "data": rows, "model": embedded.model, "usage": usage})


async def _api_embeddings(request: HttpRequest) -> HttpResponseBase:
    return await _embeddings(request, "embeddings")


async def _openai_embeddings(request: HttpRequest) -> HttpResponseBase:
    return await _embeddings(request, "openai_embeddings")


class EmbeddingsView(APIView):
    @extend_schema(
        operation_id="embeddings",
        summary="Embed texts (OpenAI shape)",
        request=EmbeddingsInput,
        responses={200: EmbeddingsOutput},
        description="Inputs are embedded in batches of EMBEDDINGS_BATCH_SIZE; vectors are L2-normalised.",
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


class OpenAIEmbeddingsView(EmbeddingsView):
    @extend_schema(
        operation_id="openai_embeddings",
        summary="Embed texts (OpenAI-compatible)",
        request=EmbeddingsInput,
        responses={200: EmbeddingsOutput},
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


embeddings_view = async_endpoint(EmbeddingsView, {"POST": _api_embeddings})
openai_embeddings_view = async_endpoint(OpenAIEmbeddingsView, {"POST": _openai_embeddings})


def _key(request: Request) -> KeyInfo:
    if not isinstance(request.auth, KeyInfo):
        raise NotAuthenticated("Batches belong to an API key: send one.")
    return request.auth


class BatchesView(APIView):
    @extend_schema(
        operation_id="embeddings_batch_create",
        summary="Embed a large list of texts on a worker",
        request=BatchInput,
        responses={202: BatchOutput},
        description="Answers 202 at once; read the result from GET /api/v1/embeddings/batches/<id>.",
    )
    def post(self, request: Request) -> Response:
        serializer = BatchInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = _key(request)
        batch = batch_submit(
            key=key, inputs=serializer.validated_data["input"], model_id=serializer.validated_data.get("model")
        )
        return Response(batch_payload(batch), status=202)


class BatchDetailView(APIView):
    @extend_schema(
        operation_id="embeddings_batch",
        summary="A batch's status and, once done, its embeddings (OpenAI shape)",
        parameters=[OpenApiParameter("encoding_format", str, enum=["float", "base64"], required=False)],
        responses={200: BatchOutput},
    )
    def get(self, request: Request, batch_id: uuid.UUID) -> Response:
        key = _key(request)
        batch = EmbeddingBatch.objects.filter(pk=batch_id).first()
        # Another key's batch answers like a missing one: its existence is not told.
        if batch is None or (batch.api_key_id != key.id and not key.is_staff):
            raise NotFound("No such batch.", code="batch_not_found")
        encoding = request.query_params.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise InvalidRequest("encoding_format must be float or base64.", param="encoding_format")
        return Response(batch_payload(batch, encoding_format=encoding))


# --- collections -------------------------------------------------------------------------------------


def collection_payload(collection: Collection) -> dict[str, Any]:
    counts = Collection.objects.filter(pk=collection.pk).aggregate(
        n_documents=Count("documents", distinct=True),
        n_chunks=Count("documents__chunks"),
        n_embedded=Count("documents__chunks", filter=Q(documents__chunks__embedding__isnull=False)),
    )
    return {
        "name": collection.name,
        "embedding_model": collection.embedding_model,
        "dimensions": collection.dimensions,
        "status": collection.status,
        "documents": counts["n_documents"],
        "chunks": counts["n_chunks"],
        "embedded_chunks": counts["n_embedded"],
        "index_version": collection.index_version,
        "indexed_at": collection.indexed_at.isoformat() if collection.indexed_at else None,
        "last_error": collection.last_error,
    }


class CollectionsView(APIView):
    @extend_schema(operation_id="rag_collections", summary="List RAG collections", responses={200: CollectionList})
    def get(self, request: Request) -> Response:
        return Response({"data": [collection_payload(c) for c in Collection.objects.all()]})


class CollectionDetailView(APIView):
    @extend_schema(
        operation_id="rag_collection",
        summary="A RAG collection and its indexing state",
        responses={200: CollectionOutput},
    )
    def get(self, request: Request, name: str) -> Response:
        collection = Collection.objects.filter(name=name).first()
        if collection is None:
            raise NotFound(f"The collection {name!r} does not exist.", code="collection_not_found")
        return Response(collection_payload(collection))


class DocumentsView(APIView):
    @extend_schema(
        operation_id="rag_ingest",
        summary="Add or replace documents in a collection (created on first use)",
        request=IngestInput,
        responses={202: IngestOutput},
        description="Documents are chunked at once; a worker embeds the chunks and publishes the index "
        "(the collection's status goes from indexing to ready). A known document id replaces its document.",
    )
    def post(self, request: Request, name: str) -> Response:
        serializer = IngestInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        ingested = services.documents_ingest(
            collection_name=name,
            documents=serializer.validated_data["documents"],
            embedding_model_id=serializer.validated_data.get("embedding_model"),
        )
        return Response(
            {"collection": collection_payload(ingested.collection), "documents": ingested.documents}, status=202
        )


# --- RAG ---------------------------------------------------------------------------------------------


async def _rag(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    data = validated(RagInput, json_body(request))
    collection = await sync_to_async(services.collection_for_query, thread_sensitive=False)(data["collection"])
    sources = await services.retrieve(collection, data["query"], data["top_k"])
    messages = services.rag_messages(data["query"], sources, data.get("system"))
    call = generation_call(request, key, data, "rag", messages)
    return await serve_generation(call, request, extra={"sources": [s.as_dict() for s in sources]})


class RagView(APIView):
    @extend_schema(
        operation_id="rag",
        summary="Answer a question from a collection's documents (routed generation with sources)",
        request=RagInput,
        responses={(200, "application/json"): RagOutput, (200, "text/event-stream"): SSE_EVENT},
        description="The query is embedded, the top_k nearest chunks are cited in the prompt, and the answer is "
        'generated like /api/v1/generate. With `stream: true`: a `{"type":"sources",...}` event, then the '
        "events of a streamed generate.",
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


rag_view = async_endpoint(RagView, {"POST": _rag})
