"""Stored Responses API answers (``store: true``): kept per key, read back within the retention period.

Every read filters on the key and on the age, so a response of another key, an unknown one and an expired
one are the same "not found" (no existence leaks), whether or not the hourly purge has run yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .models import StoredResponse


def _cutoff() -> datetime:
    return timezone.now() - timedelta(days=settings.RESPONSES_RETENTION_DAYS)


def load(response_id: str, key_id: int) -> StoredResponse | None:
    """The key's stored response ``response_id``, unless it is unknown, another key's or expired."""
    return StoredResponse.objects.filter(id=response_id, api_key_id=key_id, created_at__gte=_cutoff()).first()


def save(
    response_id: str,
    key_id: int,
    body: dict[str, Any],
    conversation: list[dict[str, Any]],
    input_items: list[dict[str, Any]],
) -> None:
    """Keep an answer once it is complete: one INSERT."""
    StoredResponse.objects.create(
        id=response_id,
        api_key_id=key_id,
        created_at=timezone.now(),
        body=body,
        conversation=conversation,
        input_items=input_items,
    )


def delete(response_id: str, key_id: int) -> bool:
    """Delete the key's stored response; False when there was none for it to delete."""
    deleted, _ = StoredResponse.objects.filter(id=response_id, api_key_id=key_id, created_at__gte=_cutoff()).delete()
    return deleted > 0


def purge_expired() -> int:
    """Delete every stored response past the retention period; how many."""
    deleted, _ = StoredResponse.objects.filter(created_at__lt=_cutoff()).delete()
    return deleted
