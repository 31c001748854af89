"""The audit tests' starting point: the seeded defaults with an empty log, and a staff key to change things."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import apikey_create
from routing.seed import seed_defaults


@pytest.fixture
def seeded_db(db: None) -> None:
    seed_defaults()
    LogEntry.objects.all().delete()  # the seed's own entries (no actor) are not what these tests look at


@pytest.fixture
def ops(seeded_db: None) -> tuple[ApiKey, APIClient]:
    """A staff key owned by the user alice, and a client that sends it."""
    alice = User.objects.create_user("alice", email="alice@example.com")
    key, raw = apikey_create(name="ops", is_staff=True, owner=alice)
    LogEntry.objects.all().delete()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return key, client
