"""RAG's vectors as stored (little-endian float32 bytes: a chunk's, a batch's) and as answered (OpenAI's
``data`` rows). The embedding call itself is ``routing.embedding``, shared with semantic routing."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from routing.embedding import Vectors


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blobs: Sequence[bytes | memoryview], dimensions: int) -> Vectors:
    if not blobs:
        return np.zeros((0, dimensions), dtype=np.float32)
    joined = b"".join(bytes(b) for b in blobs)
    return np.frombuffer(joined, dtype="<f4").reshape(len(blobs), dimensions).astype(np.float32)


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
