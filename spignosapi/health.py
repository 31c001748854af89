"""Dependency checks behind ``/health/full``: each returns ok/error with its latency, never raises."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from kombu.connection import Connection

from spignosapi.celery import app as celery_app
from spignosapi.tasks import BEAT_HEARTBEAT_KEY

CHECK_TIMEOUT_S = 3.0
_pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="health")
_CREDENTIALS = re.compile(r"(://)[^/@\s]*@")


def describe(exc: BaseException) -> str:
    """An error's class and message with any URL credentials removed (secrets never leave the process)."""
    text = _CREDENTIALS.sub(r"\1***@", str(exc))[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # The check runs on a pool thread: do not leave a connection open behind it.
        connection.close()
    return None


def check_redis() -> str | None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return None


def check_broker() -> str | None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2, transport_options={"max_retries": 0}) as conn:
        conn.ensure_connection(max_retries=0, timeout=2)
        if conn.transport_cls in ("redis", "rediss"):
            conn.default_channel.client.ping()
    return None


def check_workers() -> str | None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
        replies = celery_app.control.ping(timeout=1.0, limit=1, connection=conn)
    if not replies:
        return "no Celery worker answered a ping"
    return None


def check_beat() -> str | None:
    beat = cache.get(BEAT_HEARTBEAT_KEY)
    if beat is None:
        return "no beat heartbeat recorded"
    age = time.time() - float(beat)
    limit = 3 * settings.BEAT_HEARTBEAT_SECONDS + 5
    if age > limit:
        return f"last beat heartbeat {age:.0f}s ago (limit {limit}s)"
    return None


async def check_channel_layer() -> str | None:
    layer = get_channel_layer()
    if layer is None:
        return "no channel layer configured"
    channel = await layer.new_channel()
    marker = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.ping", "marker": marker})
    message = await layer.receive(channel)
    if message.get("marker") != marker:
        return "channel layer returned a different message"
    return None


SYNC_CHECKS: dict[str, Callable[[], str | None]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "workers": check_workers,
    "beat": check_beat,
}


async def _timed(name: str, run: Callable[[], Awaitable[str | None]]) -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    try:
        problem = await asyncio.wait_for(run(), CHECK_TIMEOUT_S)
    except TimeoutError:
        problem = f"timed out after {CHECK_TIMEOUT_S:.0f}s"
    except Exception as exc:  # a check must report, never raise
        problem = describe(exc)
    result: dict[str, Any] = {
        "status": "ok" if problem is None else "error",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if problem is not None:
        result["error"] = problem
    return name, result


async def run_checks() -> dict[str, dict[str, Any]]:
    loop = asyncio.get_running_loop()

    def in_thread(check: Callable[[], str | None]) -> Callable[[], Awaitable[str | None]]:
        return lambda: loop.run_in_executor(_pool, check)

    runs = [_timed(name, in_thread(check)) for name, check in SYNC_CHECKS.items()]
    runs.append(_timed("channel_layer", check_channel_layer))
    return dict(await asyncio.gather(*runs))
