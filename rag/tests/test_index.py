"""The per-process cache of FAISS indexes."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from pytest_django import Settings

from rag import index
from rag.models import Chunk, Collection, Document
from rag.vectors import to_bytes

pytestmark = pytest.mark.django_db


def test_the_cache_tells_collections_apart_by_uid_not_primary_key(settings: Settings, tmp_path: Path) -> None:
    settings.RAG_INDEX_DIR = tmp_path
    collection = Collection.objects.create(name="kb", embedding_model="demo/demo-embed", dimensions=2, index_version=1)
    document = Document.objects.create(collection=collection, external_id="d", text="old")
    old = Chunk.objects.create(document=document, index=0, start=0, text="old", embedding=to_bytes(np.array([1, 0])))
    index.write(collection, index.build(collection))
    assert index.search(collection, np.array([1, 0]), 1) == [(old.pk, 1.0)]

    # Another collection under the same primary key and version (a database restored or rebuilt).
    old.delete()
    new = Chunk.objects.create(document=document, index=0, start=0, text="new", embedding=to_bytes(np.array([0, 1])))
    Collection.objects.filter(pk=collection.pk).update(uid=uuid.uuid4())
    successor = Collection.objects.get(pk=collection.pk)
    assert successor.index_version == collection.index_version
    assert index.search(successor, np.array([0, 1]), 1) == [(new.pk, 1.0)]
    index.forget()
