"""Migration 0003 makes a key's prefix unique: keys that shared one before are told apart by a suffix."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import IntegrityError, transaction

pytestmark = pytest.mark.django_db(transaction=True)


def test_keys_sharing_a_prefix_get_a_suffix_and_the_oldest_keeps_it(migrator: Any) -> None:
    old = migrator.apply_initial_migration([("accounts", "0002_team")])
    ApiKey = old.apps.get_model("accounts", "ApiKey")
    keys = [("first", "spg-shared01"), ("other", "spg-alone001"), ("second", "spg-shared01"), ("third", "spg-shared01")]
    for n, (name, prefix) in enumerate(keys):
        key = ApiKey.objects.create(name=name, prefix=prefix, hashed_key=str(n) * 64)
        ApiKey.objects.filter(pk=key.pk).update(created_at=datetime(2026, 1, 1 + n, tzinfo=UTC))

    new = migrator.apply_tested_migration([("accounts", "0003_key_and_team_controls")])

    ApiKey = new.apps.get_model("accounts", "ApiKey")
    assert dict(ApiKey.objects.values_list("name", "prefix")) == {
        "first": "spg-shared01",
        "other": "spg-alone001",
        "second": "spg-shared01~2",
        "third": "spg-shared01~3",
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.create(name="again", prefix="spg-alone001", hashed_key="9" * 64)
