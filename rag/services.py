"""Writes and retrieval of the RAG app: ingest documents, index a collection, find the chunks of a query."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from semantic_text_splitter import TextSplitter

from spignosapi.api.errors import ApiError, InvalidRequest, NotFound

from . import index
from .embedding import aembed, embed, embedding_model, to_bytes
from .models import Chunk, Collection, Document

logger = logging.getLogger(__name__)


def chunk_text(text: str, *, size: int, overlap: int) -> list[tuple[int, str]]:
    """(start offset, text) chunks of at most ``size`` characters, cut at the largest unit that fits
    (paragraphs, then sentences, then words), consecutive chunks sharing up to ``overlap`` characters."""
    overlap = min(overlap, size // 2)
    splitter = TextSplitter(size, overlap=overlap, trim=True)
    return [(start, chunk) for start, chunk in splitter.chunk_indices(text) if chunk.strip()]


@dataclass(frozen=True, slots=True)
class Ingested:
    collection: Collection
    documents: list[dict[str, Any]]  # {"id", "title", "chunks", "replaced"}


def collection_get_or_create(name: str, *, embedding_model_id: str | None = None) -> Collection:
    from routing.selectors import routing_config

    model = embedding_model(routing_config.get(), embedding_model_id, param="embedding_model")
    collection, _ = Collection.objects.get_or_create(
        name=name,
        defaults={
            "embedding_model": model.model_id,
            "chunk_size": settings.RAG_CHUNK_SIZE,
            "chunk_overlap": settings.RAG_CHUNK_OVERLAP,
        },
    )
    return collection


def documents_ingest(
    *, collection_name: str, documents: Sequence[dict[str, Any]], embedding_model_id: str | None = None
) -> Ingested:
    """Store documents (a known id replaces its document) and their chunks; indexing is queued after commit.

    Creates the collection on first use, with ``embedding_model_id`` or the default embedding model.
    """
    from .tasks import index_collection

    with transaction.atomic():
        collection = collection_get_or_create(collection_name, embedding_model_id=embedding_model_id)
        if embedding_model_id and embedding_model_id != collection.embedding_model:
            raise InvalidRequest(
                f"The collection {collection.name!r} is embedded by {collection.embedding_model!r}.",
                code="embedding_model_mismatch",
                param="embedding_model",
            )
        collection = Collection.objects.select_for_update().get(pk=collection.pk)
        report = []
        for spec in documents:
            external_id = (
                str(spec.get("id") or "") or f"doc-{Document.objects.filter(collection=collection).count() + 1}"
            )
            doc, created = Document.objects.update_or_create(
                collection=collection,
                external_id=external_id,
                defaults={"title": spec.get("title") or "", "text": spec["text"]},
            )
            if not created:
                doc.chunks.all().delete()
            pieces = chunk_text(spec["text"], size=collection.chunk_size, overlap=collection.chunk_overlap)
            Chunk.objects.bulk_create(
                [Chunk(document=doc, index=i, start=start, text=text) for i, (start, text) in enumerate(pieces)]
            )
            report.append({"id": external_id, "title": doc.title, "chunks": len(pieces), "replaced": not created})
        collection.status = Collection.Status.INDEXING
        collection.save(update_fields=["status", "updated_at"])
        pk = collection.pk
        transaction.on_commit(lambda: index_collection.apply_async(args=[pk], queue="default"))
    return Ingested(collection=collection, documents=report)


def collection_index(collection_pk: int) -> Collection | None:
    """Embed the chunks that have no vector yet and publish a new index version; None if the collection is gone.

    The model is called outside any transaction (it may take long, and a transaction held meanwhile would
    block every writer of these tables); the vectors and the new version are then written in one short
    transaction that locks the collection, so builds publish one at a time. Chunks replaced or deleted
    while they were being embedded are skipped. When the model fails, the collection says so (status
    ``failed``, ``last_error``) and the error propagates (the task retries the retryable ones); the next
    successful build makes it ``ready`` again.
    """
    try:
        return _collection_index(collection_pk)
    except ApiError as exc:
        Collection.objects.filter(pk=collection_pk).update(
            status=Collection.Status.FAILED, last_error=str(exc.detail)[:500], updated_at=timezone.now()
        )
        raise


def _collection_index(collection_pk: int) -> Collection | None:
    found = Collection.objects.filter(pk=collection_pk).first()
    if found is None:
        return None
    pending = list(
        Chunk.objects.filter(document__collection=found, embedding__isnull=True)
        .order_by("pk")
        .values_list("pk", "text")
    )
    vectors: dict[int, bytes] = {}
    dimensions = found.dimensions
    if pending:
        embedded = embed([text for _, text in pending], found.embedding_model)
        dimensions = int(embedded.vectors.shape[1])
        if found.dimensions and found.dimensions != dimensions:
            raise InvalidRequest(
                f"The model gave {dimensions}-dimensional vectors; the collection holds {found.dimensions}.",
                code="dimensions_mismatch",
            )
        vectors = {pk: to_bytes(vector) for (pk, _), vector in zip(pending, embedded.vectors, strict=True)}
    with transaction.atomic():
        collection = Collection.objects.select_for_update().filter(pk=collection_pk).first()
        if collection is None:
            return None
        collection.dimensions = dimensions
        still = list(Chunk.objects.filter(pk__in=vectors, embedding__isnull=True))
        for chunk in still:
            chunk.embedding = vectors[chunk.pk]
        Chunk.objects.bulk_update(still, ["embedding"], batch_size=500)
        collection.index_version += 1
        collection.indexed_at = timezone.now()
        chunks = Chunk.objects.filter(document__collection=collection)
        if chunks.filter(embedding__isnull=True).exists():  # an ingest since our read: its own build follows
            collection.status = Collection.Status.INDEXING
        else:
            collection.status = Collection.Status.READY if chunks.exists() else Collection.Status.EMPTY
        collection.last_error = ""
        collection.save()
        if collection.dimensions:
            index.write(collection, index.build(collection))
    return collection


def collection_for_query(name: str) -> Collection:
    collection = Collection.objects.filter(name=name).first()
    if collection is None:
        raise NotFound(f"The collection {name!r} does not exist.", code="collection_not_found", param="collection")
    return collection


@dataclass(frozen=True, slots=True)
class Source:
    document: str
    title: str
    chunk: int
    score: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "title": self.title,
            "chunk": self.chunk,
            "score": round(self.score, 4),
            "text": self.text,
        }


async def retrieve(collection: Collection, query: str, top_k: int) -> list[Source]:
    """The ``top_k`` chunks nearest to ``query``, best first."""
    from asgiref.sync import sync_to_async

    if not collection.dimensions:
        return []
    embedded = await aembed([query], collection.embedding_model)
    hits = await sync_to_async(index.search, thread_sensitive=False)(collection, embedded.vectors[0], top_k)
    return await sync_to_async(_sources, thread_sensitive=False)(hits)


def _sources(hits: list[tuple[int, float]]) -> list[Source]:
    chunks = Chunk.objects.select_related("document").in_bulk([pk for pk, _ in hits])
    return [
        Source(
            document=chunks[pk].document.external_id,
            title=chunks[pk].document.title,
            chunk=chunks[pk].index,
            score=score,
            text=chunks[pk].text,
        )
        for pk, score in hits
        if pk in chunks  # a chunk replaced since the index was built is left out
    ]


RAG_SYSTEM = (
    "Answer the question using only the numbered sources below. Cite the sources you use as [1], [2], ... "
    "If the sources do not contain the answer, say that you do not know.\n\nSources:\n{sources}"
)


def rag_messages(query: str, sources: Sequence[Source], system: str | None = None) -> list[dict[str, str]]:
    listed = "\n\n".join(
        f"[{i}] {s.title or s.document} (document {s.document}, chunk {s.chunk}):\n{s.text}"
        for i, s in enumerate(sources, start=1)
    )
    content = RAG_SYSTEM.format(sources=listed or "(no source matched)")
    if system:
        content = f"{system}\n\n{content}"
    return [{"role": "system", "content": content}, {"role": "user", "content": query}]
