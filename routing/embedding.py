"""Embedding texts with a configured embedding model, in batches, as L2-normalised float32 vectors.

The one embedding call: semantic routing (``semantic.py``) embeds a request's text with it, RAG its chunks
and queries, ``/v1/embeddings`` a client's inputs. It raises the gateway's own error, never an HTTP one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from llm import LLMError
from spignosapi import loops

from .engine import handler_for
from .errors import GatewayError, Reason, final_error
from .selectors import ModelInfo, RoutingConfig, routing_config

Vectors = np.ndarray  # shape (n, dimensions), float32, rows of unit length


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: Vectors
    model: str  # the model id that embedded them
    prompt_tokens: int


def embedding_model(config: RoutingConfig, model_id: str | None, *, param: str = "model") -> ModelInfo:
    """The enabled embedding model ``model_id`` (default: ``EMBEDDINGS_DEFAULT_MODEL``), or the one a model
    alias of that name names; not found or invalid otherwise."""
    model_id = model_id or settings.EMBEDDINGS_DEFAULT_MODEL
    info = config.models.get(model_id)
    alias = config.aliases.get(model_id) if info is None else None
    if alias is not None and alias.model is not None:  # (text-embedding-3-small → a local model, say)
        info = config.models.get(alias.model)
    if alias is not None and alias.category is not None:
        raise GatewayError(
            f"The model alias {model_id!r} names the category {alias.category!r}, not an embedding model.",
            reason=Reason.INVALID,
            code="not_an_embedding_model",
            param=param,
        )
    if info is None:
        raise GatewayError(
            f"The model {model_id!r} does not exist.", reason=Reason.NOT_FOUND, code="model_not_found", param=param
        )
    if info.kind != "embedding":
        raise GatewayError(
            f"The model {model_id!r} is not an embedding model.",
            reason=Reason.INVALID,
            code="not_an_embedding_model",
            param=param,
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
        raise GatewayError(
            f"This model gives {vectors.shape[1]}-dimensional vectors: 'dimensions' must be at most "
            f"{vectors.shape[1]}, not {dimensions}.",
            reason=Reason.INVALID,
            code="invalid_dimensions",
            param="dimensions",
        )
    return normalized(vectors[:, :dimensions])


def _gateway_error(error: LLMError, model_id: str) -> GatewayError:
    attempts = [{"model": model_id, "outcome": "error", "error": f"{error.code}: {error.message}"[:300]}]
    if error.code == "provider_not_configured":
        return GatewayError(
            f"The embedding model is not available: {error.message}",
            reason=Reason.UPSTREAM_FAILED,
            code="model_unavailable",
        )
    if error.retryable:
        if error.code == "timeout":
            return GatewayError(
                "The embedding model timed out.",
                reason=Reason.UPSTREAM_TIMEOUT,
                code="upstream_timeout",
                retryable=True,
                extra={"attempts": attempts},
            )
        return GatewayError(
            f"The embedding model failed: {error.message}",
            reason=Reason.UPSTREAM_FAILED,
            code=error.code,
            retryable=True,
            extra={"attempts": attempts},
        )
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
            raise _gateway_error(exc, info.model_id) from exc
        rows.extend(result.vectors)
        tokens += result.usage.prompt_tokens
    return Embedded(vectors=normalized(rows), model=info.model_id, prompt_tokens=tokens)


def embed(texts: Sequence[str], model_id: str | None = None) -> Embedded:
    """``aembed`` from synchronous code (a Celery task, a command)."""
    return loops.run(aembed(texts, model_id))
