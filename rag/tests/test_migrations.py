"""The migration that gave collections an owner (rag 0003), run on a database holding collections made before
it (django-test-migrations: the database is migrated back, filled, then migrated forward)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction

pytestmark = pytest.mark.django_db(transaction=True)

# No accounts target: the first step applies every migration planned before rag 0002, all of accounts' among
# them (it sorts first), so naming an older accounts migration would mean unapplying one in the same step.
BEFORE = [("rag", "0002_embedding_batch")]
AFTER = [("rag", "0003_collection_owner")]
TIDES = "Tides follow the Moon."


def test_existing_collections_become_staff_owned_and_lose_nothing(migrator: Any) -> None:
    old = migrator.apply_initial_migration(BEFORE)
    ApiKey = old.apps.get_model("accounts", "ApiKey")
    Collection = old.apps.get_model("rag", "Collection")
    Document = old.apps.get_model("rag", "Document")
    Chunk = old.apps.get_model("rag", "Chunk")
    EmbeddingBatch = old.apps.get_model("rag", "EmbeddingBatch")
    creator = ApiKey.objects.create(name="creator", prefix="spg-creator1", hashed_key="a" * 64)
    # "kb" was ingested over the API by that key, which nothing recorded (its batches name no collection);
    # "notes" was made in the admin.
    kb = Collection.objects.create(
        name="kb", embedding_model="local/all-minilm-l6-v2", status="ready", dimensions=384, index_version=3
    )
    document = Document.objects.create(collection=kb, external_id="tides", title="Tides", text=TIDES)
    Chunk.objects.create(document=document, index=0, start=0, text=TIDES, embedding=b"\x00" * 1536)
    EmbeddingBatch.objects.create(api_key=creator, model="local/all-minilm-l6-v2", inputs=[TIDES])
    Collection.objects.create(name="notes", embedding_model="demo/demo-embed")
    uids = dict(Collection.objects.values_list("name", "uid"))

    new = migrator.apply_tested_migration(AFTER)
    Collection = new.apps.get_model("rag", "Collection")
    Chunk = new.apps.get_model("rag", "Chunk")
    rows = Collection.objects.order_by("name").values_list(
        "name", "owner_team_id", "owner_key_id", "public_read", "status", "index_version", "uid"
    )
    assert list(rows) == [
        ("kb", None, None, False, "ready", 3, uids["kb"]),  # the same uid: its index files stay valid
        ("notes", None, None, False, "empty", 0, uids["notes"]),
    ]
    assert list(Chunk.objects.values_list("document__collection__name", "document__external_id", "text")) == [
        ("kb", "tides", TIDES)
    ]
    assert bytes(Chunk.objects.get().embedding) == b"\x00" * 1536

    # Names are unique per owner now: the creator may have a "kb" of its own beside the staff-owned one,
    # staff may not have two.
    Collection.objects.create(name="kb", owner_key_id=creator.pk, embedding_model="demo/demo-embed")
    with pytest.raises(IntegrityError), transaction.atomic():
        Collection.objects.create(name="kb", embedding_model="demo/demo-embed")
    assert Collection.objects.filter(name="kb").count() == 2
