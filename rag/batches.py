"""Large embedding requests on Celery: a batch row holds the inputs, a worker fills in the vectors.

``POST /api/v1/embeddings/batches`` answers 202 at once; ``GET /api/v1/embeddings/batches/<id>`` gives the
status and, once done, the OpenAI-shaped result. The row is written before the task is sent and the task is
acknowledged only after it finished (``acks_late``), so a worker that dies mid-batch loses nothing: the
batch is delivered again and, having no vectors yet, embedded again.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.selectors import KeyInfo
from routing.embedding import embed, embedding_model
from routing.selectors import routing_config
from spignosapi.api.errors import error_parts
from spignosapi.errors import ServiceError

from .models import EmbeddingBatch
from .usage import embedding_usage_book
from .vectors import embedding_rows, from_bytes, to_bytes


def batch_submit(*, key: KeyInfo, inputs: list[str], model_id: str | None) -> EmbeddingBatch:
    from .tasks import embed_batch

    info = embedding_model(routing_config.get(), model_id)
    with transaction.atomic():
        batch = EmbeddingBatch.objects.create(api_key_id=key.id, model=info.model_id, inputs=inputs)
        batch_id = str(batch.pk)
        transaction.on_commit(lambda: embed_batch.apply_async(args=[batch_id], queue="low", task_id=batch_id))
    return batch


def batch_run(batch_id: str, *, final_attempt: bool) -> str:
    """Embed the batch unless it is already finished; returns its status. Retryable failures propagate
    (the task retries them) unless this is the final attempt, which records the failure."""
    started = time.perf_counter()
    with transaction.atomic():
        batch = EmbeddingBatch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.is_finished:
            return batch.status if batch else "missing"
        batch.status = EmbeddingBatch.Status.RUNNING
        batch.started_at = batch.started_at or timezone.now()
        batch.deliveries += 1
        batch.save(update_fields=["status", "started_at", "deliveries"])
    try:
        embedded = embed(batch.inputs, batch.model)
    except ServiceError as exc:
        if exc.retryable and not final_attempt:
            raise
        parts = error_parts(exc)
        batch.status = EmbeddingBatch.Status.FAILED
        batch.error = dict(parts[0]["error"]) if parts else {"message": str(exc), "type": "api_error"}
        batch.finished_at = timezone.now()
        batch.save(update_fields=["status", "error", "finished_at"])
        embedding_usage_book(
            key_id=batch.api_key_id,
            request_id=f"batch-{batch.pk}",
            endpoint="embeddings_batch",
            model_id=batch.model,
            tokens=0,
            started=started,
            user="",
            error=exc.code,
        )
        return batch.status
    batch.dimensions = int(embedded.vectors.shape[1])
    batch.vectors = b"".join(to_bytes(row) for row in embedded.vectors)
    batch.prompt_tokens = embedded.prompt_tokens
    batch.status = EmbeddingBatch.Status.SUCCEEDED
    batch.finished_at = timezone.now()
    batch.save(update_fields=["dimensions", "vectors", "prompt_tokens", "status", "finished_at"])
    embedding_usage_book(
        key_id=batch.api_key_id,
        request_id=f"batch-{batch.pk}",
        endpoint="embeddings_batch",
        model_id=batch.model,
        tokens=embedded.prompt_tokens,
        started=started,
        user="",
        error="",
    )
    return batch.status


def batch_payload(batch: EmbeddingBatch, *, encoding_format: str = "float") -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(batch.pk),
        "object": "embedding.batch",
        "status": batch.status,
        "model": batch.model,
        "inputs": len(batch.inputs),
        "created_at": batch.created_at.isoformat(),
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
    }
    if batch.status == EmbeddingBatch.Status.SUCCEEDED and batch.vectors is not None and batch.dimensions:
        blob = bytes(batch.vectors)
        size = batch.dimensions * 4
        vectors = from_bytes([blob[i : i + size] for i in range(0, len(blob), size)], batch.dimensions)
        payload["data"] = embedding_rows(vectors, encoding_format)
        payload["usage"] = {"prompt_tokens": batch.prompt_tokens, "total_tokens": batch.prompt_tokens}
    if batch.error:
        payload["error"] = batch.error
    return payload
