"""Live token streams of async jobs: a Redis replay buffer plus a Channels group per session.

The worker appends every message to the session's buffer (a Redis list: its index is the message's
sequence number) and then sends it to the session's group. A reader — WebSocket consumer or SSE view —
joins the group first, replays the buffer, then relays live messages, skipping any sequence number it has
already sent and filling gaps from the buffer. So a client that connects late, or reconnects, receives
everything produced so far and then the live tail, with no message lost or duplicated.

A job redelivered after its worker died starts again: if the earlier delivery had published anything, the
worker publishes ``{"type": "reset"}`` before the new chunks, and a client drops the text it had (the
buffer keeps growing, so sequence numbers never go back).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff

logger = logging.getLogger(__name__)

BUFFER_TTL_S = 3600
TERMINAL = frozenset({"complete", "error"})
# How long a reader waits on the group before looking at the buffer again (and, for SSE, a keep-alive).
POLL_S = 5.0


def buffer_key(session_id: str) -> str:
    return f"jobstream:{session_id}"


def group_name(session_id: str) -> str:
    return f"jobstream.{session_id}"


# A worker's commands ride out a Redis restart: a broken connection is replaced and the command tried again,
# backing off from 0.1 s to 5 s, for about a minute in all, before the job's run gives up (and is retried).
REDIS_RETRY_ATTEMPTS = 20


def redis_client(*, attempts: int = REDIS_RETRY_ATTEMPTS) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.REDIS_CACHE_URL,
        socket_connect_timeout=2,
        # An idle pooled connection is pinged before use, so one Redis closed meanwhile is not the failure.
        health_check_interval=10,
        retry=Retry(EqualJitterBackoff(cap=5, base=0.1), attempts),
    )


class Publisher:
    """Used by the worker, inside one event loop, for one job."""

    def __init__(self, session_id: str, *, attempts: int = REDIS_RETRY_ATTEMPTS) -> None:
        self.session_id = session_id
        self.redis = redis_client(attempts=attempts)
        self.layer = get_channel_layer()

    async def publish(self, message: dict[str, Any]) -> int:
        key = buffer_key(self.session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(message))
            pipe.expire(key, BUFFER_TTL_S)
            seq, _ = await pipe.execute()
        if self.layer is not None:
            try:
                await self.layer.group_send(
                    group_name(self.session_id), {"type": "stream.message", "seq": seq, "payload": message}
                )
            except Exception as exc:  # the buffer has it: readers find it there at their next look (POLL_S)
                logger.warning("stream message not relayed live (%s); readers replay it", type(exc).__name__)
        return int(seq)

    async def last(self) -> dict[str, Any] | None:
        """The last message the session's buffer holds (None when it holds none)."""
        raw = await self.redis.lindex(buffer_key(self.session_id), -1)
        return dict(json.loads(raw)) if raw else None

    async def published(self) -> int:
        """How many messages the session's buffer holds (every delivery's)."""
        return int(await self.redis.llen(buffer_key(self.session_id)))

    async def close(self) -> None:
        await self.redis.aclose()


async def publish_once(session_id: str, message: dict[str, Any], *, attempts: int = REDIS_RETRY_ATTEMPTS) -> None:
    """One message to a session, from outside a job's run (a cancel, the sweeper)."""
    publisher = Publisher(session_id, attempts=attempts)
    try:
        await publisher.publish(message)
    finally:
        await publisher.close()


async def subscribe(session_id: str, *, poll_s: float = POLL_S) -> AsyncIterator[dict[str, Any] | None]:
    """Every message of the session from the first, then live ones, ending after ``complete``/``error``.

    Yields ``None`` when nothing happened for ``poll_s`` seconds (SSE sends a keep-alive then).
    """
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    client = redis_client()
    # The default prefix matters: channels_redis serves every "specific." channel of a process through one
    # receive loop, which a WebSocket consumer's own channel shares; another prefix would wait for that loop.
    channel = await layer.new_channel()
    group = group_name(session_id)
    await layer.group_add(group, channel)
    sent = 0
    try:
        while True:
            # Whatever the buffer holds beyond what was sent: the replay at first, then any gap.
            for raw in await client.lrange(buffer_key(session_id), sent, -1):
                sent += 1
                message = json.loads(raw)
                yield message
                if message.get("type") in TERMINAL:
                    return
            try:
                event = await asyncio.wait_for(layer.receive(channel), poll_s)
            except TimeoutError:
                yield None
                continue
            seq = int(event.get("seq", 0))
            if seq == sent + 1:
                sent = seq
                yield event["payload"]
                if event["payload"].get("type") in TERMINAL:
                    return
            # seq <= sent: already relayed from the buffer; seq > sent + 1: the loop reads the gap.
    finally:
        await layer.group_discard(group, channel)
        await client.aclose()
