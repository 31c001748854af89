"""Celery task of the RAG app: embed a collection's new chunks and publish its index."""

from __future__ import annotations

from celery import Task, shared_task

from spignosapi.errors import ServiceError
from spignosapi.tasks import retry_countdown

from .services import collection_index

MAX_RETRIES = 3


@shared_task(
    bind=True, name="rag.index_collection", acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES
)
def index_collection(self: Task, collection_pk: int) -> int | None:
    """Idempotent: chunks that already have a vector are not embedded again. Returns the index version
    (None when the collection was deleted meanwhile)."""
    try:
        collection = collection_index(collection_pk)
        return collection.index_version if collection else None
    except ServiceError as exc:
        if not exc.retryable:
            raise
        # The embedding model failed (retryable on its side): try again later, with backoff and jitter.
        raise self.retry(countdown=retry_countdown(self.request.retries), exc=exc) from None


@shared_task(
    bind=True,
    name="rag.embed_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    ignore_result=True,
)
def embed_batch(self: Task, batch_id: str) -> str:
    from .batches import batch_run

    try:
        return batch_run(batch_id, final_attempt=self.request.retries >= MAX_RETRIES)
    except ServiceError as exc:
        if not exc.retryable:
            raise
        raise self.retry(countdown=retry_countdown(self.request.retries), exc=exc) from None
