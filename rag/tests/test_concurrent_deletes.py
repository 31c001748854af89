"""A collection deleted between a request finding it and its write: the write answers as if it came later."""

from __future__ import annotations

import pytest

from rag import services
from rag.models import Collection
from spignosapi.errors import Reason, ServiceError

pytestmark = pytest.mark.django_db


def test_deleting_a_document_of_a_collection_deleted_meanwhile_is_a_404() -> None:
    found = Collection.objects.create(name="kb", embedding_model="demo/demo-embed")
    Collection.objects.filter(pk=found.pk).delete()  # a concurrent DELETE of the collection won the race

    with pytest.raises(ServiceError) as refused:
        services.document_delete(collection=found, external_id="doc-1")

    assert (refused.value.reason, refused.value.code, refused.value.message) == (
        Reason.NOT_FOUND,
        "collection_not_found",
        "The collection 'kb' does not exist.",
    )


def test_deleting_a_collection_deleted_meanwhile_deletes_nothing_more() -> None:
    found = Collection.objects.create(name="kb", embedding_model="demo/demo-embed")
    other = Collection.objects.create(name="other", embedding_model="demo/demo-embed")
    Collection.objects.filter(pk=found.pk).delete()

    services.collection_delete(collection=found)

    assert list(Collection.objects.values_list("name", flat=True)) == [other.name]


def test_sharing_a_collection_deleted_meanwhile_is_a_404() -> None:
    found = Collection.objects.create(name="kb", embedding_model="demo/demo-embed")
    Collection.objects.filter(pk=found.pk).delete()

    with pytest.raises(ServiceError) as refused:
        services.collection_share(collection=found, teams=None, public_read=True)

    assert (refused.value.reason, refused.value.code) == (Reason.NOT_FOUND, "collection_not_found")
    assert not Collection.objects.exists()
