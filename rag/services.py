"""Writes and retrieval of the RAG app: ingest, delete and share; index a collection; find a query's chunks.

Who may do what is decided in ``rag.selectors``; these functions act on the collection it resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from semantic_text_splitter import TextSplitter

from accounts.models import ApiKey, Team
from routing.embedding import aembed, embed, embedding_model
from spignosapi.errors import Reason, ServiceError

from . import index
from .models import Chunk, Collection, Document
from .selectors import Caller, collection_find, owner_for_new
from .vectors import to_bytes

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


def documents_ingest(
    *,
    caller: Caller,
    collection_name: str,
    documents: Sequence[dict[str, Any]],
    owner: str | None = None,
    embedding_model_id: str | None = None,
) -> Ingested:
    """Store documents in the caller's own collection ``collection_name`` - created there on first use, with
    ``embedding_model_id`` or the default embedding model - or, with ``owner``, in that owner's (staff, or
    the caller naming itself). Ingest never writes into a collection that is only shared with the caller or
    public: a key writing a name it merely reads makes a collection of its own, which its reads then prefer.
    """
    with transaction.atomic():
        team, key = owner_for_new(caller, owner)
        collection = _collection_get_or_create(
            collection_name, team=team, key=key, embedding_model_id=embedding_model_id
        )
        return documents_store(collection=collection, documents=documents, embedding_model_id=embedding_model_id)


def _collection_get_or_create(
    name: str, *, team: Team | None, key: ApiKey | None, embedding_model_id: str | None
) -> Collection:
    from routing.selectors import routing_config

    model = embedding_model(routing_config.get(), embedding_model_id, param="embedding_model")
    collection, _ = Collection.objects.get_or_create(
        name=name,
        owner_team=team,
        owner_key=key,
        defaults={
            "embedding_model": model.model_id,
            "chunk_size": settings.RAG_CHUNK_SIZE,
            "chunk_overlap": settings.RAG_CHUNK_OVERLAP,
        },
    )
    return collection


def documents_store(
    *, collection: Collection, documents: Sequence[dict[str, Any]], embedding_model_id: str | None = None
) -> Ingested:
    """Store documents in ``collection`` (a known id replaces its document) and their chunks; indexing is
    queued after commit."""
    from .tasks import index_collection

    if embedding_model_id and embedding_model_id != collection.embedding_model:
        raise ServiceError(
            f"The collection {collection.name!r} is embedded by {collection.embedding_model!r}.",
            reason=Reason.INVALID,
            code="embedding_model_mismatch",
            param="embedding_model",
        )
    with transaction.atomic():
        collection = _locked(collection)
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


def _locked(collection: Collection) -> Collection:
    """The collection's row, locked for this transaction; 404 ``collection_not_found`` when a concurrent
    delete took it after the caller found it (as if the caller had come a moment later)."""
    locked = Collection.objects.select_for_update().filter(pk=collection.pk).first()
    if locked is None:
        raise ServiceError(
            f"The collection {collection.name!r} does not exist.", reason=Reason.NOT_FOUND, code="collection_not_found"
        )
    return locked


def collection_delete(*, collection: Collection) -> None:
    """Delete the collection with its documents and chunks; its index files go once that is committed."""
    uid = collection.uid
    with transaction.atomic():
        # The collection's row first, as every writer of its documents takes it (ingest, document delete):
        # the cascade below then locks its documents and chunks after them, never against them (a deadlock).
        locked = Collection.objects.select_for_update().filter(pk=collection.pk).first()
        if locked is not None:  # deleted meanwhile: nothing is left to delete
            locked.delete()
        transaction.on_commit(lambda: index.remove(uid))


def document_delete(*, collection: Collection, external_id: str) -> Collection:
    """Delete one document and publish an index without its chunks (no model call: the others' vectors are
    stored). 404 ``document_not_found`` when the collection has no such document."""
    with transaction.atomic():
        locked = _locked(collection)
        deleted, _ = Document.objects.filter(collection=locked, external_id=external_id).delete()
        if not deleted:
            raise ServiceError(
                f"The collection {locked.name!r} has no document {external_id!r}.",
                reason=Reason.NOT_FOUND,
                code="document_not_found",
            )
        _publish(locked)
    return locked


def collection_share(*, collection: Collection, teams: Sequence[str] | None, public_read: bool | None) -> None:
    """Set who besides its owner may read the collection: the keys of ``teams`` (names, replacing the
    list; 400 ``unknown_team`` for a name that is no team) and, with ``public_read``, every key."""
    with transaction.atomic():
        collection = _locked(collection)
        if teams is not None:
            found = list(Team.objects.filter(name__in=teams))
            unknown = sorted(set(teams) - {t.name for t in found})
            if unknown:
                raise ServiceError(
                    f"No such team: {', '.join(unknown)}.",
                    reason=Reason.INVALID,
                    code="unknown_team",
                    param="shared_with_teams",
                )
            collection.shared_with_teams.set(found)
        if public_read is not None:
            collection.public_read = public_read
            collection.save(update_fields=["public_read", "updated_at"])


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
    except ServiceError as exc:
        Collection.objects.filter(pk=collection_pk).update(
            status=Collection.Status.FAILED, last_error=exc.message[:500], updated_at=timezone.now()
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
            raise ServiceError(
                f"The model gave {dimensions}-dimensional vectors; the collection holds {found.dimensions}.",
                reason=Reason.INVALID,
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
        _publish(collection)
    return collection


def _publish(collection: Collection) -> None:
    """A new index version of the collection's embedded chunks, and the status that goes with it. The
    caller holds the collection's row lock, so builds publish one at a time."""
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


# A collection still indexing whose first chunks are not embedded yet: try again in this many seconds.
NOT_READY_RETRY_AFTER_S = 5


def collection_for_query(caller: Caller, name: str, *, owner: str | None = None) -> tuple[Collection, dict[str, Any]]:
    """The collection a RAG query reads, and what its answer must add about it: nothing when it is ready,
    else ``collection_status`` and ``collection_progress`` (its sources come from what is indexed so far).

    409 ``collection_not_ready`` when nothing of it is indexed yet (with ``Retry-After`` while it indexes),
    rather than an answer that looks as if nothing matched.
    """
    collection = collection_find(caller, name, access="read", owner=owner, param="collection")
    if collection.status == Collection.Status.READY:
        return collection, {}
    chunks = Chunk.objects.filter(document__collection=collection)
    progress = {"chunks": chunks.count(), "embedded_chunks": chunks.filter(embedding__isnull=False).count()}
    if progress["embedded_chunks"] == 0 and collection.status == Collection.Status.INDEXING:
        raise ServiceError(
            f"The collection {name!r} is still indexing and has nothing indexed yet.",
            reason=Reason.CONFLICT,
            code="collection_not_ready",
            param="collection",
            retry_after=NOT_READY_RETRY_AFTER_S,
        )
    if progress["embedded_chunks"] == 0 and collection.status == Collection.Status.FAILED:
        raise ServiceError(
            f"Indexing the collection {name!r} failed ({collection.last_error}); ingest again to retry.",
            reason=Reason.CONFLICT,
            code="collection_not_ready",
            param="collection",
        )
    return collection, {"collection_status": collection.status, "collection_progress": progress}


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
