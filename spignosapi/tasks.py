"""Platform-wide tasks."""

from __future__ import annotations

import random
import time

from celery import shared_task
from django.core.cache import cache

BEAT_HEARTBEAT_KEY = "platform:beat:heartbeat"


def retry_countdown(retries: int) -> float:
    """Seconds before a task's next try: exponential backoff with jitter, 2, 4, 8 s (± 50 %)."""
    return float(2 ** (retries + 1) * random.uniform(0.5, 1.5))


@shared_task(name="spignosapi.tasks.beat_heartbeat", ignore_result=True)
def beat_heartbeat() -> None:
    """Scheduled by beat, run by a worker: the time it last ran tells /health/full that beat is alive."""
    cache.set(BEAT_HEARTBEAT_KEY, time.time(), timeout=None)
