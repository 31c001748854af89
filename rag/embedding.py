"""Embedding texts with a configured embedding model, in batches, as L2-normalised float32 vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from llm import LLMError
from routing.engine import handler_for
from routing.selectors import ModelInfo, RoutingConfig, routing_config
from spignosapi import loops
from spignosapi.api.errors import ApiError, InvalidRequest, NotFound, UpstreamFailed, UpstreamTimeout

Vectors = np.ndarray  # shape (n, dimensions), float32, rows of unit length


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: Vectors
    model: str  # the model id that embedded them
    prompt_tokens: int


def embedding_model(config: RoutingConfig, model_id: str | None, *, param: str = "model") -> ModelInfo:
    """The enabled embedding model ``model_id`` (default: ``EMBEDDINGS_DEFAULT_MODEL``); 404 or 400 otherwise."""
    model_id = model_id or settings.EMBEDDINGS_DEFAULT_MODEL
    info = config.models.get(model_id)
    if info is None:
        raise NotFound(f"The model {model_id!r} does not exist.", code="model_not_found", param=param)
    if info.kind != "embedding":
        raise InvalidRequest(
            f"The model {model_id!r} is not an embedding model.", code="not_an_embedding_model", param=param
        )
    return info


def normalized(rows: Sequence[Sequence[float]] | Vectors) -> Vectors:
    vectors = np.asarray(rows, dtype=np.float32)
    if vectors.ndim != 2:
        vectors = vectors.reshape(len(rows), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def shortened(vectors: Vectors, dimensions: int | None) -> Vectors:
    """The first ``dimensions`` of each vector, re-normalised: how OpenAI shortens text-embedding-3's vectors
    (its models are trained so that a prefix keeps the meaning). 400 when the model gives fewer."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    if dimensions > vectors.shape[1]:
        raise InvalidRequest(
            f"This model gives {vectors.shape[1]}-dimensional vectors: 'dimensions' must be at most "
            f"{vectors.shape[1]}, not {dimensions}.",
            code="invalid_dimensions",
            param="dimensions",
        )
    return normalized(vectors[:, :dimensions])


def _api_error(error: LLMError, model_id: str) -> ApiError:
    attempts = [{"model": model_id, "outcome": "error", "error": f"{error.code}: {error.message}"[:300]}]
    if error.code == "provider_not_configured":
        return UpstreamFailed(f"The embedding model is not available: {error.message}", code="model_unavailable")
    if error.retryable:
        if error.code == "timeout":
            return UpstreamTimeout("The embedding model timed out.", extra={"attempts": attempts})
        return UpstreamFailed(
            f"The embedding model failed: {error.message}", code=error.code, extra={"attempts": attempts}
        )
    from routing.gateway import final_error  # the gateway imports this module (semantic routing)

    return final_error(error, attempts)


async def aembed(texts: Sequence[str], model_id: str | None = None, *, config: RoutingConfig | None = None) -> Embedded:
    """``texts`` embedded by ``model_id``, ``EMBEDDINGS_BATCH_SIZE`` per upstream call."""
    config = config or await routing_config.aget()
    info = embedding_model(config, model_id)
    handler = handler_for(config.providers)
    rows: list[list[float]] = []
    tokens = 0
    size = settings.EMBEDDINGS_BATCH_SIZE
    for start in range(0, len(texts), size):
        try:
            result = await handler.aembed(info.model_id, texts[start : start + size])
        except LLMError as exc:
            raise _api_error(exc, info.model_id) from exc
        rows.extend(result.vectors)
        tokens += result.usage.prompt_tokens
    return Embedded(vectors=normalized(rows), model=info.model_id, prompt_tokens=tokens)


def embed(texts: Sequence[str], model_id: str | None = None) -> Embedded:
    """``aembed`` from synchronous code (a Celery task, a command)."""
    return loops.run(aembed(texts, model_id))


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blobs: Sequence[bytes | memoryview], dimensions: int) -> Vectors:
    if not blobs:
        return np.zeros((0, dimensions), dtype=np.float32)
    joined = b"".join(bytes(b) for b in blobs)
    return np.frombuffer(joined, dtype="<f4").reshape(len(blobs), dimensions).astype(np.float32)
