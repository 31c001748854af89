"""Live token streams of async jobs: one Redis stream per session, read from any point without consuming.

The worker appends every message to the session's Redis stream (``XADD``), numbered 1, 2, 3, … (entry ids
``"<n>-0"``): a message's number is its sequence number. A reader — WebSocket consumer or SSE view — reads
the stream after the last message it relayed (``XREAD BLOCK``): everything already there first (the replay),
then each message as it is added. Reading takes nothing away, so any number of readers, joining at any
time, each get every message exactly once and in order; a reader that leaves, or is cancelled in the middle
of a read, costs no other reader anything.

Why not a Channels group (as before): the group's messages went through each web process's one
channels_redis receive loop, which *pops* them. A reader cancelled while it held that loop (its client
disconnected, or its keep-alive wait ended) took another stream's message with it; a process that fell
behind (one message per four Redis round trips, every stream of the process in one queue) delayed all of
its streams by seconds, and past the layer's ``capacity`` dropped messages silently. Readers then waited
for their next poll to find the message in the replay buffer, and a stream whose ``complete`` was lost
stalled (tests: ``jobs/tests/test_streams.py``).

A job redelivered after its worker died starts again: if the earlier delivery had published anything, the
worker publishes ``{"type": "reset"}`` before the new chunks, and a client drops the text it had (the
stream keeps growing, so sequence numbers never go back).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

BUFFER_TTL_S = 3600
TERMINAL = frozenset({"complete", "error"})
# How long a reader waits for the next message before SSE sends a keep-alive (and the wait starts again).
POLL_S = 5.0
# Messages one read returns at most (a late reader of a long answer catches up in a few reads).
READ_BATCH = 500

# Append one message: its number is the stream's length plus one, and its entry id "<number>-0", so a
# reader's position is the number of messages it has relayed. Atomic, so concurrent publishers (a worker
# and a cancellation) never share a number.
_APPEND = """
local number = redis.call('XLEN', KEYS[1]) + 1
redis.call('XADD', KEYS[1], number .. '-0', 'm', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return number
"""


def buffer_key(session_id: str) -> str:
    # Not the "jobstream:<id>" list of the Channels design: a reader of one never mistakes the other's type.
    return f"jobstream:{session_id}:entries"


def redis_client(**options: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.REDIS_CACHE_URL, **options)


class Publisher:
    """Used by the worker, inside one event loop, for one job."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.redis = redis_client()
        self._append = self.redis.register_script(_APPEND)

    async def publish(self, message: dict[str, Any]) -> int:
        """Append ``message`` to the session's stream; returns its sequence number."""
        number = await self._append(keys=[buffer_key(self.session_id)], args=[json.dumps(message), BUFFER_TTL_S])
        return int(number)

    async def published(self) -> int:
        """How many messages the session's stream holds (every delivery's)."""
        return int(await self.redis.xlen(buffer_key(self.session_id)))

    async def close(self) -> None:
        await self.redis.aclose()


async def subscribe(session_id: str, *, poll_s: float = POLL_S) -> AsyncGenerator[dict[str, Any] | None, None]:
    """Every message of the session from the first, then live ones, ending after ``complete``/``error``.

    Yields ``None`` when nothing happened for ``poll_s`` seconds (SSE sends a keep-alive then).
    """
    # A client of its own: a blocked read holds its connection until a message comes or poll_s passes. Its
    # reply may take poll_s, longer than redis-py's default socket timeout (5 s): allow that and some more.
    client = redis_client(socket_timeout=poll_s + 10)
    key = buffer_key(session_id)
    sent = 0
    try:
        while True:
            # [[key, [(entry id, fields), …]]], or nothing when poll_s passed first.
            reply: Any = await client.xread({key: f"{sent}-0"}, count=READ_BATCH, block=max(1, int(poll_s * 1000)))
            if not reply:
                yield None
                continue
            entries: list[tuple[bytes, dict[bytes, bytes]]] = reply[0][1]
            for entry_id, fields in entries:
                sent = int(entry_id.split(b"-", 1)[0])
                message = json.loads(fields[b"m"])
                yield message
                if message.get("type") in TERMINAL:
                    return
    finally:
        await client.aclose()
