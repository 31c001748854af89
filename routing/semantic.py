"""The ``semantic`` routing mode: the category whose example requests are most similar to the request.

Each category's examples are embedded once per process (again when they or the model change); a request
costs one embedding of its text. Similarity is the cosine of L2-normalised vectors; a category scores its
best example.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings

from .embedding import aembed
from .router import TOOLS_CATEGORY
from .selectors import RoutingConfig

_examples: dict[tuple[str, tuple[tuple[str, str], ...]], np.ndarray] = {}


def _pairs(config: RoutingConfig) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name, example)
        for name, info in sorted(config.categories.items())
        if name != TOOLS_CATEGORY
        for example in info.examples
    )


async def _example_vectors(config: RoutingConfig, model: str, pairs: tuple[tuple[str, str], ...]) -> np.ndarray:
    key = (model, pairs)
    vectors = _examples.get(key)
    if vectors is None:
        # No lock: the first requests after a change may embed the examples twice, which is harmless, and
        # an asyncio lock would be bound to one event loop (a worker runs a loop per task).
        vectors = (await aembed([example for _, example in pairs], model, config=config)).vectors
        _examples.clear()  # only the current examples are kept
        _examples[key] = vectors
    return vectors


async def semantic_category(config: RoutingConfig, text: str) -> str | None:
    """The best-matching category, or None when no category has examples or the text is empty."""
    pairs = _pairs(config)
    if not pairs or not text.strip():
        return None
    model = settings.ROUTING_EMBEDDING_MODEL
    examples = await _example_vectors(config, model, pairs)
    query = (await aembed([text], model, config=config)).vectors[0]
    scores = examples @ query
    best: dict[str, float] = {}
    for (name, _), score in zip(pairs, scores, strict=True):
        best[name] = max(best.get(name, -1.0), float(score))
    return max(sorted(best), key=lambda name: best[name])
