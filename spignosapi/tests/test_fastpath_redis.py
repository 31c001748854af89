"""spignosapi/fastpath/redis_client.py answers every command as redis-py does, against the real Redis.

The same commands go through redis-py (its own connection and RESP parser: the stock client) and through the
pipelined client, from the same starting state; the replies must be the same, values and errors alike. Then
the calls the hot path makes (``script``, ``mget``) are compared with ``RedisPyCalls``, the redis-py client
the fast one stands in for, and the pipelined client is checked under concurrency, errors and reconnects.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from django.conf import settings
from django.core.cache import cache
from redis._parsers import BaseParser

from routing import limits, quota
from spignosapi.fastpath.redis_client import PipelinedRedis, RedisPyCalls, ReplyError, cache_redis

PREFIX = "fastpath-test:"


def key(name: str) -> str:
    return cache_redis.make_key(PREFIX + name)


# Every reply type RESP2 has: simple strings, errors (with and without a code), integers, bulk strings (empty,
# binary, non-ASCII, nil, large) and arrays (empty, nested, holding nils), through commands and Lua scripts.
COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("SET", key("text"), "é, ü and 日本"),
    ("GET", key("text")),
    ("GET", key("missing")),
    ("SET", key("empty"), ""),
    ("GET", key("empty")),
    ("ECHO", b"\x00\xff\r\n$-1\r\n*2"),
    ("INCR", key("n")),
    ("INCRBY", key("n"), 41),
    ("INCRBY", key("n"), -50),
    ("INCR", key("text")),
    ("MGET", key("text"), key("missing"), key("n")),
    ("HSET", key("hash"), "tokens", "1.5", "ts", "1700000000.25"),
    ("HMGET", key("hash"), "tokens", "nope", "ts"),
    ("RPUSH", key("list"), "a", "b", "c"),
    ("LRANGE", key("list"), 0, -1),
    ("LRANGE", key("missing"), 0, -1),
    ("SET", key("big"), "x" * 200_000),
    ("STRLEN", key("big")),
    ("GET", key("big")),
    ("EXPIRE", key("text"), 60),
    ("TTL", key("text")),
    ("EVAL", "return {1, 'two', {3, false}, redis.status_reply('FINE'), {}}", 0),
    ("EVAL", "return redis.error_reply('boom')", 0),
    ("EVAL", "return redis.error_reply('ERR with a code')", 0),
    ("EVAL", "return 3.99", 0),
    ("EVAL", "return -7", 0),
    ("EVAL", "return nil", 0),
    ("EVAL", "return redis.call('GET', KEYS[1])", 1, key("text")),
    ("EVALSHA", "0" * 40, 0),
    ("NO-SUCH-COMMAND", "x"),
    ("DEL", key("text"), key("empty"), key("n"), key("hash"), key("list"), key("big"), key("missing")),
]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    keys = [key(name) for name in ("text", "empty", "n", "hash", "list", "big", "missing", "a", "b")]
    cache_redis.sync_client().delete(*keys)
    yield
    cache_redis.sync_client().delete(*keys)


def as_redis_py_reports(error: ReplyError) -> str:
    """The text redis-py gives an error reply: the reply's line without its error code, when it knows it."""
    text = str(error)
    code = text.split(" ")[0]
    return text[len(code) + 1 :] if code in BaseParser.EXCEPTION_CLASSES else text


def through_redis_py() -> list[Any]:
    connection = redis.Connection(**cache_redis.sync_client().connection_pool.connection_kwargs)
    replies: list[Any] = []
    try:
        for command in COMMANDS:
            connection.send_command(*command)
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as exc:
                replies.append(("error", str(exc)))
    finally:
        connection.disconnect()
    return replies


async def through_the_pipelined_client() -> list[Any]:
    client = cache_redis.client()
    assert isinstance(client, PipelinedRedis)
    replies: list[Any] = []
    for command in COMMANDS:
        try:
            replies.append(await client.call(*command))
        except ReplyError as exc:
            replies.append(("error", as_redis_py_reports(exc)))
    return replies


def test_every_reply_is_the_one_redis_py_reads() -> None:
    stock = through_redis_py()
    ours = asyncio.run(through_the_pipelined_client())
    assert ours == stock
    # What the comparison covered (so a change to COMMANDS cannot quietly empty it):
    assert stock[2] == "é, ü and 日本".encode() and stock[3] is None and stock[5] == b""
    assert stock[10] == ("error", "value is not an integer or out of range")
    assert stock[19] == b"x" * 200_000
    assert stock[22] == [1, b"two", [3, None], b"FINE", []]
    assert stock[23:25] == [("error", "boom"), ("error", "with a code")]


def test_the_hot_paths_calls_answer_as_through_redis_py() -> None:
    """``script`` and ``mget``, as ``limits`` and ``breaker`` call them, on both clients from the same state."""
    now = 1_700_000_000.0
    counter = quota.Counter(PREFIX + "tpm", 100, 150, expires_at=int(now) + 120)
    scripts: list[tuple[str, list[str], list[Any]]] = [
        ("return {redis.call('INCRBY', KEYS[1], ARGV[1]), ARGV[2], false}", [key("a")], [7, "é"]),
        ("return {redis.call('INCRBY', KEYS[1], ARGV[1]), ARGV[2], false}", [key("a")], [-2, ""]),
        (limits._BUCKET_LUA, [key("b"), key("missing")], [now, 60, 1, 0, 0, 0]),
        (limits._BUCKET_LUA, [key("b"), key("missing")], [now + 1, 60, 1, 0, 0, 0]),
    ]

    async def run(client: Any) -> list[Any]:
        cache_redis.sync_client().delete(key("a"), key("b"), counter.name, quota.holds_key(counter.name))
        replies = [await client.script(source, keys, args) for source, keys, args in scripts]
        reservation = await quota.reserve(client, [counter], now=now, hold_until=now + 60)
        assert isinstance(reservation, quota.Reservation)
        over = await quota.reserve(client, [counter], now=now, hold_until=now + 60)  # 100 held: 200 > 150
        replies.append(over == counter)
        replies.append(await quota.reconcile(client, reservation, [40]))
        replies.append(await quota.reconcile(client, reservation, [40]))  # settled once only
        replies.append(await quota.state(client, [counter.name], now=now))
        replies.append(await client.mget([key("a"), key("missing"), key("b")]))
        try:
            await client.script("return redis.error_reply('ERR no')", [], [])
        except (ReplyError, redis.ResponseError) as exc:
            replies.append(as_redis_py_reports(exc) if isinstance(exc, ReplyError) else str(exc))
        return replies

    async def both() -> tuple[list[Any], list[Any]]:
        redis_py = RedisPyCalls(redis.asyncio.Redis.from_url(str(settings.CACHES["default"]["LOCATION"])))
        try:
            stock = await run(redis_py)
        finally:
            await redis_py.aclose()
        return stock, await run(cache_redis.client())

    stock, ours = asyncio.run(both())
    assert ours == stock
    assert stock[:4] == [[7, b"\xc3\xa9", None], [5, b"", None], 1, 1]
    assert stock[4:8] == [True, 1, 0, [(40, 0)]]
    assert stock[-1] == "no"


def test_the_pipelined_client_keeps_every_reply_with_its_command() -> None:
    cache.delete_many([PREFIX + "a", PREFIX + "b"])

    async def scenario() -> None:
        client = cache_redis.client()
        assert isinstance(client, PipelinedRedis)
        script = "return {redis.call('INCRBY', KEYS[1], ARGV[1]), ARGV[2], false}"
        replies = await asyncio.gather(*(client.script(script, [key("a")], [i, f"é{i}"]) for i in range(1, 101)))
        assert [r[1] for r in replies] == [f"é{i}".encode() for i in range(1, 101)]
        assert replies[-1][0] == sum(range(1, 101)) and replies[-1][2] is None
        with pytest.raises(ReplyError, match="boom"):
            await client.script("return redis.error_reply('boom')", [], [])
        # A script Redis has never seen is sent whole (EVALSHA's NOSCRIPT), then by its hash.
        fresh = f"return '{random.random()}'"
        assert await client.script(fresh, [], []) == await client.script(fresh, [], [])
        assert await client.mget([key("a"), key("b")]) == [b"5050", None]
        # A lost connection fails what was in flight; the next command reconnects.
        assert client._pipe is not None and client._pipe.transport is not None
        client._pipe.transport.abort()
        await asyncio.sleep(0)
        assert (await client.mget([key("a")])) == [b"5050"]

    asyncio.run(scenario())
    assert cache.get(PREFIX + "a") == 5050  # the cache reads what the client wrote, under the same key
