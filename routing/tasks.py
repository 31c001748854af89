"""The routing app's periodic work: purging stored Responses API answers past their retention."""

from __future__ import annotations

from celery import shared_task

from . import responses_store


@shared_task(name="routing.purge_expired_responses", ignore_result=True)
def purge_expired_responses() -> int:
    """Delete the stored responses older than ``RESPONSES_RETENTION_DAYS``; how many were deleted."""
    return responses_store.purge_expired()
