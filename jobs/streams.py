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
stream keeps growing, so sequence numbers never go back). The stream is fenced by delivery number as the row
is: the first message of a delivery makes it the stream's, and an append from an earlier delivery (a worker
that lost its lease and has not noticed yet) is refused (``StaleDelivery``), so it cannot slip chunks in
after the ``reset``.

A stream can lack its last message although its job ended: a cancel or the sweeper could not reach Redis, a
worker died between storing the outcome and publishing it, the stream expired (``BUFFER_TTL_S``) before a
reader came. So a reader that waited ``poll_s`` for nothing asks its ``ending`` (the job's row, jobs/lifecycle.py)
and, if the job ended, appends the last message itself, unless one raced in meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff

BUFFER_TTL_S = 3600
TERMINAL = frozenset({"complete", "error"})
# How long a reader waits for the next message before SSE sends a keep-alive (and the wait starts again).
POLL_S = 5.0
# Messages one read returns at most (a late reader of a long answer catches up in a few reads).
READ_BATCH = 500

# Commands ride out a Redis restart: a broken connection is replaced and the command tried again, backing
# off from 0.1 s to 5 s, for about a minute in all. Reads consume nothing, and an append tried again after
# its reply was lost is recognised by its token (below), so trying again never loses or repeats a message.
REDIS_RETRY_ATTEMPTS = 20

# Append one message: its number is the stream's length plus one, and its entry id "<number>-0", so a
# reader's position is the number of messages it has relayed. Atomic, so concurrent publishers (a worker
# and a cancellation) never share a number. ARGV[3] is the append's own token: when the last entry carries
# it, this is a retry of an append that was done, whose reply was lost. ARGV[4] is the appending delivery
# (0 from outside a run: a cancel, the sweeper, a reader ending the stream): KEYS[2] holds the latest one
# that appended, and an earlier one is refused (0 returned). With ARGV[5] == "end" the message is a last
# one, appended only if the stream does not end already (the number of the last message is returned then).
_APPEND = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local last_number = last and tonumber((string.gsub(last[1], '-0$', '')))
if last and last[2][3] == 't' and last[2][4] == ARGV[3] then
    return last_number
end
local delivery = tonumber(ARGV[4])
if delivery > 0 then
    local holder = tonumber(redis.call('GET', KEYS[2]) or '0')
    if delivery < holder then
        return 0
    end
    redis.call('SET', KEYS[2], delivery, 'EX', ARGV[2])
end
if ARGV[5] == 'end' and last then
    local kind = cjson.decode(last[2][2])['type']
    if kind == 'complete' or kind == 'error' then
        return last_number
    end
end
local number = redis.call('XLEN', KEYS[1]) + 1
redis.call('XADD', KEYS[1], number .. '-0', 'm', ARGV[1], 't', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return number
"""


class StaleDelivery(Exception):
    """A later delivery of the job has taken its stream over: this one lost its lease."""


def buffer_key(session_id: str) -> str:
    # Not the "jobstream:<id>" list of the Channels design: a reader of one never mistakes the other's type.
    return f"jobstream:{session_id}:entries"


def delivery_key(session_id: str) -> str:
    """The number of the latest delivery that appended to the session's stream (its fence)."""
    return f"jobstream:{session_id}:delivery"


async def _append(
    script: Any, session_id: str, message: dict[str, Any], *, delivery: int = 0, end: bool = False
) -> int:
    args: list[str | int] = [json.dumps(message), BUFFER_TTL_S, uuid.uuid4().hex, delivery, "end" if end else ""]
    return int(await script(keys=[buffer_key(session_id), delivery_key(session_id)], args=args))


def redis_client(*, attempts: int = REDIS_RETRY_ATTEMPTS, **options: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.REDIS_CACHE_URL,
        socket_connect_timeout=2,
        # An idle pooled connection is pinged before use, so one Redis closed meanwhile is not the failure.
        health_check_interval=10,
        retry=Retry(EqualJitterBackoff(cap=5, base=0.1), attempts),
        **options,
    )


class Publisher:
    """Used by the worker, inside one event loop, for one job; ``delivery``: the claim it publishes for (0 from
    outside a run: unfenced)."""

    def __init__(self, session_id: str, *, delivery: int = 0, attempts: int = REDIS_RETRY_ATTEMPTS) -> None:
        self.session_id = session_id
        self.delivery = delivery
        self.redis = redis_client(attempts=attempts)
        self._append = self.redis.register_script(_APPEND)

    async def publish(self, message: dict[str, Any]) -> int:
        """Append ``message`` to the session's stream; returns its sequence number. Raises ``StaleDelivery``
        when a later delivery has published to the stream."""
        number = await _append(self._append, self.session_id, message, delivery=self.delivery)
        if not number:
            raise StaleDelivery(self.session_id)
        return number

    async def end(self, message: dict[str, Any]) -> int:
        """Append the last message ``message`` unless the stream ends already; the number of its last message."""
        return await _append(self._append, self.session_id, message, end=True)

    async def last(self) -> dict[str, Any] | None:
        """The last message the session's stream holds (None when it holds none)."""
        entries: Any = await self.redis.xrevrange(buffer_key(self.session_id), count=1)
        return dict(json.loads(entries[0][1][b"m"])) if entries else None

    async def published(self) -> int:
        """How many messages the session's stream holds (every delivery's)."""
        return int(await self.redis.xlen(buffer_key(self.session_id)))

    async def close(self) -> None:
        await self.redis.aclose()


async def publish_once(session_id: str, message: dict[str, Any], *, attempts: int = REDIS_RETRY_ATTEMPTS) -> None:
    """One message to a session, from outside a job's run (a cancel, the sweeper)."""
    publisher = Publisher(session_id, attempts=attempts)
    try:
        await publisher.publish(message)
    finally:
        await publisher.close()


async def subscribe(
    session_id: str,
    *,
    poll_s: float = POLL_S,
    after: int = 0,
    stop: asyncio.Future[None] | None = None,
    ending: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
) -> AsyncGenerator[dict[str, Any] | None, None]:
    """Every message of the session after the first ``after`` (an SSE client's ``Last-Event-ID``), then live
    ones, ending after ``complete``/``error`` — or as soon as ``stop`` is done (the process is shutting down).

    Yields ``None`` when nothing happened for ``poll_s`` seconds (SSE sends a keep-alive then). Each time,
    ``ending`` is asked for the stream's last message if its job has ended (None while it runs): the reader
    appends it (unless the stream ends already) and reads it as any other — so a stream whose job ended
    never stays open, and every reader of it sees the same last message.
    """
    # A client of its own: a blocked read holds its connection until a message comes or poll_s passes. Its
    # reply may take poll_s, longer than redis-py's default socket timeout (5 s): allow that and some more.
    client = redis_client(socket_timeout=poll_s + 10)
    key = buffer_key(session_id)
    sent = after
    try:
        if after and after > await client.xlen(key):
            sent = 0  # not an id this stream gave (ids are sequence numbers): the whole replay
        while stop is None or not stop.done():
            # [[key, [(entry id, fields), …]]], or nothing when poll_s passed first.
            read = client.xread({key: f"{sent}-0"}, count=READ_BATCH, block=max(1, int(poll_s * 1000)))
            reply: Any = await read if stop is None else await _unless_stopped(read, stop)
            if not reply:
                if stop is not None and stop.done():
                    continue
                last = await ending() if ending is not None else None
                if last is None:
                    yield None
                else:
                    # The next read returns it (or the last message that raced in before it) ...
                    number = await _append(client.register_script(_APPEND), session_id, last, end=True)
                    if number <= sent:  # ... unless the stream expired under this reader and began again
                        yield last
                        return
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


async def _unless_stopped(read: Any, stop: asyncio.Future[None]) -> Any:
    """``read``'s reply, or None once ``stop`` is done (the read is then cancelled: it consumed nothing)."""
    task = asyncio.ensure_future(read)
    try:
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))
    return task.result() if not task.cancelled() else None
