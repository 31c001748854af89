"""``/api/v1/embeddings``, ``/v1/embeddings``, RAG collections and ``/api/v1/rag``."""

from __future__ import annotations

import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import KeyInfo
from budgets.counters import Spend
from budgets.selectors import budget_table
from ledger.rows import UsageRow
from llm import count_tokens
from routing import gateway, limits
from routing.access import check_model
from routing.api import serve_generation
from routing.budgeting import budget_costs
from routing.embedding import aembed, embedding_model, shortened
from routing.selectors import routing_config
from spignosapi.api.asyncviews import async_endpoint, authenticate, json_body, validated
from spignosapi.api.errors import InvalidRequest, NotFound
from spignosapi.api.schema import SSE_EVENT
from spignosapi.errors import ServiceError

from . import services
from .batches import batch_payload, batch_submit
from .models import Collection, EmbeddingBatch
from .selectors import Caller, collection_find, collections_visible, may_write, with_counts
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
    ShareInput,
)
from .usage import embedding_usage_book
from .vectors import embedding_rows


def _json(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": False})


def _settle(admitted: limits.Admitted, booked: UsageRow | None) -> None:
    """Settle the key's tokens and budgets as the usage record books them, and give back its parallel slot."""
    limits.release_slot_soon(admitted.slot)
    if booked is None:
        limits.settle_tokens_soon(admitted.reservation, 0)
        return
    spend = Spend(booked.cost_usd, booked.energy_wh, booked.co2e_g)
    booked_at = booked.created_at.timestamp()
    limits.settle_tokens_soon(admitted.reservation, booked.prompt_tokens, spend, booked_at=booked_at)


async def _embeddings(request: HttpRequest, endpoint: str) -> HttpResponseBase:
    started = time.perf_counter()
    key = await authenticate(request)
    data = validated(EmbeddingsInput, json_body(request))
    texts: list[str] = data["input"]
    config = await routing_config.aget()
    info = embedding_model(config, data.get("model"))
    check_model(key, info.model_id, config)
    estimate = sum(count_tokens(t) for t in texts)
    user = data.get("user", "")
    # The key's budgets (its team's, the end user's) on the same step as its limits: the input tokens at
    # this model's prices and coefficient.
    budgets = budget_costs(
        await budget_table.aget(), key, user_id=user, models=[info], prompt_tokens=estimate, completion_tokens=0
    )
    admitted = await limits.admit_key(key, prompt_tokens=estimate, max_tokens=0, budgets=budgets)
    request_id = request.request_id  # type: ignore[attr-defined]
    book = {"key_id": key.id, "request_id": request_id, "endpoint": endpoint, "model_id": info.model_id}
    book.update(started=started, user=user)
    try:
        embedded = await aembed(texts, info.model_id, config=config)
    except BaseException as exc:
        booked = embedding_usage_book(**book, tokens=0, error=exc.code) if isinstance(exc, ServiceError) else None
        _settle(admitted, booked)  # as booked: a failed call used nothing
        raise
    error = ""
    try:
        vectors = shortened(embedded.vectors, data.get("dimensions"))
    except ServiceError as exc:  # the model's size is known once it answered: its tokens were spent all the same
        error = exc.code
        raise
    finally:
        # The key's tokens and budgets are what the model counted, as the usage record books them.
        _settle(admitted, embedding_usage_book(**book, tokens=embedded.prompt_tokens, error=error))
    rows = embedding_rows(vectors, data["encoding_format"])
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


def _caller(request: Request) -> Caller:
    if isinstance(request.auth, KeyInfo):
        return Caller.of(request.auth)
    if getattr(request.user, "is_staff", False):  # an admin's browser session (the Swagger UI)
        return Caller(key_id=None, team_id=None, is_staff=True)
    raise PermissionDenied("RAG collections belong to API keys: send one.")


def _owner(request: Request) -> str | None:
    owner: str | None = request.query_params.get("owner")
    return owner


OWNER_PARAMETER = OpenApiParameter(
    "owner",
    str,
    required=False,
    description="Whose collection the name means: team:<name>, key:<prefix> or staff. Needed only when the "
    "name is ambiguous (409 ambiguous_collection); the caller's own collection wins otherwise.",
)


def collection_payload(collection: Collection, caller: Caller) -> dict[str, Any]:
    """A collection as the API shows it; counts from ``selectors.with_counts`` when annotated there."""
    if not hasattr(collection, "n_documents"):
        collection = with_counts(Collection.objects.filter(pk=collection.pk)).get()
    manager = may_write(caller, collection)
    return {
        "name": collection.name,
        "owner": collection.owner_label,
        # Who else reads it is the owner's business: null for a key that only reads it.
        "shared_with_teams": [t.name for t in collection.shared_with_teams.all()] if manager else None,
        "public_read": collection.public_read,
        "embedding_model": collection.embedding_model,
        "dimensions": collection.dimensions,
        "status": collection.status,
        "documents": collection.n_documents,  # type: ignore[attr-defined]
        "chunks": collection.n_chunks,  # type: ignore[attr-defined]
        "embedded_chunks": collection.n_embedded,  # type: ignore[attr-defined]
        "index_version": collection.index_version,
        "indexed_at": collection.indexed_at.isoformat() if collection.indexed_at else None,
        "last_error": collection.last_error,
    }


class CollectionsView(APIView):
    @extend_schema(
        operation_id="rag_collections",
        summary="List the RAG collections this key may read",
        parameters=[OpenApiParameter("owner", str, required=False, description="Only this owner's collections.")],
        responses={200: CollectionList},
    )
    def get(self, request: Request) -> Response:
        caller = _caller(request)
        visible = collections_visible(caller, owner=_owner(request))
        return Response({"data": [collection_payload(c, caller) for c in visible]})


class CollectionDetailView(APIView):
    @extend_schema(
        operation_id="rag_collection",
        summary="A RAG collection and its indexing state",
        parameters=[OWNER_PARAMETER],
        responses={200: CollectionOutput},
    )
    def get(self, request: Request, name: str) -> Response:
        caller = _caller(request)
        collection = collection_find(caller, name, access="read", owner=_owner(request))
        return Response(collection_payload(collection, caller))

    @extend_schema(
        operation_id="rag_collection_share",
        summary="Share a collection with teams, or make it public-read (its owner or staff)",
        parameters=[OWNER_PARAMETER],
        request=ShareInput,
        responses={200: CollectionOutput},
        description="shared_with_teams replaces the list of teams whose keys may query the collection; "
        "public_read lets every key query it. Neither lets anyone but the owner and staff ingest.",
    )
    def patch(self, request: Request, name: str) -> Response:
        caller = _caller(request)
        serializer = ShareInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        collection = collection_find(caller, name, access="write", owner=_owner(request))
        services.collection_share(
            collection=collection,
            teams=serializer.validated_data.get("shared_with_teams"),
            public_read=serializer.validated_data.get("public_read"),
        )
        return Response(collection_payload(collection, caller))

    @extend_schema(
        operation_id="rag_collection_delete",
        summary="Delete a collection, its documents and its index (its owner or staff)",
        parameters=[OWNER_PARAMETER],
        responses={204: None},
    )
    def delete(self, request: Request, name: str) -> Response:
        collection = collection_find(_caller(request), name, access="write", owner=_owner(request))
        services.collection_delete(collection=collection)
        return Response(status=204)


class DocumentsView(APIView):
    @extend_schema(
        operation_id="rag_ingest",
        summary="Add or replace documents in a collection of yours (created on first use)",
        parameters=[OWNER_PARAMETER],
        request=IngestInput,
        responses={202: IngestOutput},
        description="Documents are chunked at once; a worker embeds the chunks and publishes the index "
        "(the collection's status goes from indexing to ready). A known document id replaces its document. "
        "The collection is the caller's own (its team's, else its key's); staff write into another owner's "
        "with ?owner=.",
    )
    def post(self, request: Request, name: str) -> Response:
        caller = _caller(request)
        serializer = IngestInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        ingested = services.documents_ingest(
            caller=caller,
            collection_name=name,
            owner=_owner(request),
            documents=serializer.validated_data["documents"],
            embedding_model_id=serializer.validated_data.get("embedding_model"),
        )
        return Response(
            {"collection": collection_payload(ingested.collection, caller), "documents": ingested.documents},
            status=202,
        )


class DocumentDetailView(APIView):
    @extend_schema(
        operation_id="rag_document_delete",
        summary="Delete a document from a collection (its owner or staff); the index follows at once",
        parameters=[OWNER_PARAMETER],
        responses={204: None},
    )
    def delete(self, request: Request, name: str, document_id: str) -> Response:
        collection = collection_find(_caller(request), name, access="write", owner=_owner(request))
        services.document_delete(collection=collection, external_id=document_id)
        return Response(status=204)


# --- RAG ---------------------------------------------------------------------------------------------


async def _rag(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    data = validated(RagInput, json_body(request))
    collection, status = await sync_to_async(services.collection_for_query, thread_sensitive=False)(
        Caller.of(key), data["collection"], owner=request.GET.get("owner")
    )
    sources = await services.retrieve(collection, data["query"], data["top_k"])
    messages = services.rag_messages(data["query"], sources, data.get("system"))
    request_id = request.request_id  # type: ignore[attr-defined]
    call = gateway.generation_call(data, key=key, request_id=request_id, endpoint="rag", messages=messages)
    return await serve_generation(call, extra={"sources": [s.as_dict() for s in sources], **status})


class RagView(APIView):
    @extend_schema(
        operation_id="rag",
        summary="Answer a question from a collection's documents (routed generation with sources)",
        parameters=[OWNER_PARAMETER],
        request=RagInput,
        responses={(200, "application/json"): RagOutput, (200, "text/event-stream"): SSE_EVENT},
        description="The query is embedded, the top_k nearest chunks are cited in the prompt, and the answer is "
        'generated like /api/v1/generate. With `stream: true`: a `{"type":"sources",...}` event, then the '
        "events of a streamed generate. A collection that is not ready adds `collection_status` and "
        "`collection_progress` (an event each when streaming): its sources come from what is indexed so far; "
        "409 collection_not_ready (with Retry-After while indexing) when nothing is.",
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


rag_view = async_endpoint(RagView, {"POST": _rag})
