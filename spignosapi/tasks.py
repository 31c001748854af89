"""Platform-wide tasks."""

from __future__ import annotations

import time

from celery import shared_task
from django.core.cache import cache

BEAT_HEARTBEAT_KEY = "platform:beat:heartbeat"


@shared_task(name="spignosapi.tasks.beat_heartbeat", ignore_result=True)
def beat_heartbeat() -> None:
    """Scheduled by beat, run by a worker: the time it last ran tells /health/full that beat is alive."""
    cache.set(BEAT_HEARTBEAT_KEY, time.time(), timeout=None)
