"""One FAISS index per collection, on disk under ``RAG_INDEX_DIR``, cached in each process.

The file ``<collection uid>-v<index_version>.faiss`` holds an inner-product index (vectors are unit length,
so scores are cosine similarities) whose ids are chunk primary keys. The database is the source of truth:
a process that finds no file for the collection's current version - a new host, a wiped disk, a build it
did not see - rebuilds it from the chunk vectors stored in the database, without calling the model.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from .models import Chunk, Collection
from .vectors import from_bytes

if TYPE_CHECKING:
    import faiss

# collection uid -> (index_version, index). By uid, as the files are: a primary key comes back after a
# database restore (or a test database rebuilt), with version numbers starting again, and would be served
# another collection's index.
_cache: dict[uuid.UUID, tuple[int, faiss.Index]] = {}
_lock = threading.Lock()


def index_path(collection: Collection, version: int | None = None) -> Path:
    version = collection.index_version if version is None else version
    return Path(settings.RAG_INDEX_DIR) / f"{collection.uid}-v{version}.faiss"


def build(collection: Collection) -> faiss.Index:
    """An index of the collection's embedded chunks, from the vectors stored in the database."""
    import faiss  # imported on first use: it is large, and most processes never search

    rows = list(
        Chunk.objects.filter(document__collection=collection, embedding__isnull=False).values_list("pk", "embedding")
    )
    dimensions = collection.dimensions or 0
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimensions))
    if rows:
        vectors = from_bytes([blob for _, blob in rows if blob is not None], dimensions)
        index.add_with_ids(vectors, np.asarray([pk for pk, _ in rows], dtype=np.int64))
    return index


def write(collection: Collection, index: faiss.Index) -> Path:
    """Write the index for the collection's current version atomically; remove older versions."""
    import faiss

    directory = Path(settings.RAG_INDEX_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = index_path(collection)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{collection.uid}-", suffix=".tmp")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for old in directory.glob(f"{collection.uid}-v*.faiss"):
        if old != path:
            old.unlink(missing_ok=True)
    with _lock:
        _cache[collection.uid] = (collection.index_version, index)
    return path


def load(collection: Collection) -> faiss.Index:
    """The collection's index at its current version: from memory, else its file, else rebuilt and written."""
    cached = _cache.get(collection.uid)
    if cached is not None and cached[0] == collection.index_version:
        return cached[1]
    with _lock:
        cached = _cache.get(collection.uid)
        if cached is not None and cached[0] == collection.index_version:
            return cached[1]
        import faiss

        path = index_path(collection)
        index = faiss.read_index(str(path)) if path.exists() else None
        if index is not None:
            _cache[collection.uid] = (collection.index_version, index)
            return index
    index = build(collection)
    write(collection, index)
    return index


def search(collection: Collection, query: np.ndarray, top_k: int) -> list[tuple[int, float]]:
    """(chunk pk, cosine score) of the ``top_k`` nearest chunks, best first."""
    index = load(collection)
    if index.ntotal == 0:
        return []
    scores, ids = index.search(np.asarray(query, dtype=np.float32).reshape(1, -1), min(top_k, index.ntotal))
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]


def forget(uid: uuid.UUID | None = None) -> None:
    """Drop cached indexes (all, or one collection's): the next search reads them from disk."""
    with _lock:
        if uid is None:
            _cache.clear()
        else:
            _cache.pop(uid, None)


def remove(uid: uuid.UUID) -> None:
    """Delete a deleted collection's index files and drop it from this process's cache. (Other processes
    never search it again - it is gone from the database - and lose their copy when they restart.)"""
    for path in Path(settings.RAG_INDEX_DIR).glob(f"{uid}-v*.faiss"):
        path.unlink(missing_ok=True)
    forget(uid)
