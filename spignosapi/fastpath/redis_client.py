"""The hot path's Redis client: one pipelined asyncio connection per process and event loop.

Replaces: redis-py's asyncio client (``redis.asyncio.Redis``: its pool, retries and parser layers) and, before
it, ``django.core.cache.cache`` on the request path, which is context-local: every request (an asyncio task)
built a new cache object with a new connection pool, so each opened a Redis connection (with a ``CLIENT
SETINFO`` handshake) and each call needed a thread.

Measured gain: against redis-py (``RedisPyCalls``), an admission-sized EVALSHA and an MGET cost 75 instead
of 144 µs of CPU per command one at a time, 22 instead of 95 fifty at a time (``python -m bench.fastpath``,
2026-12-04; a shared 2-core machine at load average 6-10: noisy); issue 9's profile gave ~60 against ~105
(2026-11-23; ``bench/README.md``, "What was on the hot path", item 3). Commands queued in one turn of the
event loop leave in one ``write``, which was the largest single self-time of a web process (~16 %, item 9,
30eabaa). The context-local cache it replaced on the request path opened a connection, with its handshake,
for every request.

It speaks RESP2 over plain TCP (``redis://`` URLs); anything else (TLS, unix sockets) gets redis-py behind
the same two calls (``RedisPyCalls``). ``cache_redis`` makes keys and reads values exactly as the default
cache does, so the hot path and the cache (and django-ratelimit) share every counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.cache import caches


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``, ``-NOSCRIPT ...``)."""


_INCOMPLETE = object()


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 reply from ``buf`` at ``pos``: (value, next position), or (_INCOMPLETE, pos)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind, line = buf[pos], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == 43:  # + simple string
        return line, pos
    if kind == 45:  # - error
        return ReplyError(line.decode(errors="replace")), pos
    if kind == 58:  # : integer
        return int(line), pos
    if kind == 36:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            return _INCOMPLETE, pos
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == 42:  # * array
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = _parse(buf, pos)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, pos
    raise ReplyError(f"unexpected reply type {chr(kind)!r}")


def _pack(args: Sequence[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        value = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


class _PipeProtocol(asyncio.Protocol):
    """One connection; commands go out in order and replies resolve their futures in the same order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.buffer = bytearray()
        self.outgoing: list[bytes] = []
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        while self.waiters:
            try:
                reply, end = _parse(self.buffer, pos)
            except (ValueError, ReplyError) as exc:  # a protocol error: nothing after it can be trusted
                self.fail(ConnectionError(f"bad reply from Redis: {exc}"))
                return
            if reply is _INCOMPLETE:
                break
            pos = end
            waiter = self.waiters.popleft()
            if not waiter.done():  # a caller that gave up (cancelled) still had its reply read
                if isinstance(reply, ReplyError):
                    waiter.set_exception(reply)
                else:
                    waiter.set_result(reply)
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"Redis connection lost: {exc}" if exc else "Redis connection closed"))

    def fail(self, exc: Exception) -> None:
        self.lost = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue a command; commands sent in the same turn of the event loop leave in one write (one system
        call for many concurrent requests: each write to a socket costs more CPU than the command itself)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self.waiters.append(waiter)
        if not self.outgoing:
            loop.call_soon(self._write)
        self.outgoing.append(packed)
        return waiter

    def _write(self) -> None:
        data = b"".join(self.outgoing)
        self.outgoing.clear()
        if self.transport is not None and not self.lost:
            self.transport.write(data)


class PipelinedRedis:
    """A minimal asyncio Redis client for the hot path: one pipelined connection per event loop.

    Concurrent requests share the connection, their commands queued in order (what that saves: the module's
    header). Any trouble (timeout, lost connection) drops the connection and fails the commands in flight;
    the next command reconnects.
    """

    def __init__(self, host: str, port: int, db: int, username: str | None, password: str | None, timeout: float):
        self.host, self.port, self.db, self.timeout = host, port, db, timeout
        self.username, self.password = username, password
        self._pipe: _PipeProtocol | None = None
        self._connecting: asyncio.Future[_PipeProtocol] | None = None
        self._shas: dict[str, str] = {}

    async def _connection(self) -> _PipeProtocol:
        pipe = self._pipe
        if pipe is not None and not pipe.lost:
            return pipe
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _connect(self) -> _PipeProtocol:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            _, pipe = await loop.create_connection(_PipeProtocol, self.host, self.port)
            setup = []
            if self.password is not None:
                auth = ["AUTH", self.username, self.password] if self.username else ["AUTH", self.password]
                setup.append(pipe.send(_pack(auth)))
            if self.db:
                setup.append(pipe.send(_pack(["SELECT", self.db])))
            for waiter in setup:
                await waiter
        self._pipe = pipe
        return pipe

    async def call(self, *args: Any) -> Any:
        pipe = await self._connection()
        waiter = pipe.send(_pack(args))
        try:
            async with asyncio.timeout(self.timeout):
                return await waiter
        except TimeoutError:
            pipe.fail(ConnectionError("Redis timed out"))  # replies would no longer match their commands
            raise

    async def script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.call("EVAL", source, len(keys), *keys, *args)

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await self.call("MGET", *keys))

    async def aclose(self) -> None:
        if self._pipe is not None and self._pipe.transport is not None:
            self._pipe.transport.close()


class RedisPyCalls:
    """The same calls through redis-py's asyncio client (TLS, unix sockets: anything ``redis://`` is not)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._scripts: dict[str, Any] = {}

    async def script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
        return await script(keys=keys, args=args)

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await self.client.mget(keys))

    async def aclose(self) -> None:
        await self.client.aclose()


class CacheRedis:
    """The default cache's Redis server as an asyncio client, one per event loop, and for synchronous callers
    through the cache's one pool per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sync_scripts: dict[str, Any] = {}
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = weakref.WeakKeyDictionary()
        self._cache: Any = None

    @property
    def cache(self) -> Any:
        """A private instance of the default cache (not context-local), for its key function and serializer."""
        if self._cache is None:
            self._cache = caches.create_connection("default")
        return self._cache

    def make_key(self, key: str) -> str:
        return str(self.cache.make_key(key))

    def loads(self, raw: bytes) -> Any:
        return self.cache._cache._serializer.loads(raw)

    def sync_client(self) -> Any:
        """A redis-py client on the process's one pool (``cache`` itself is per request)."""
        return self.cache._cache.get_client(write=True)

    def sync_script(self, source: str) -> Any:
        """A redis-py ``Script`` on the process's pool, registered once (every ``sync_client`` shares it)."""
        script = self._sync_scripts.get(source)
        if script is None:
            script = self._sync_scripts[source] = self.sync_client().register_script(source)
        return script

    def client(self) -> PipelinedRedis | RedisPyCalls:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            with self._lock:
                client = self._clients.get(loop)
                if client is None:
                    client = self._clients[loop] = self._new_client()
                    self._close_with_loop(loop, client)
        return client

    def _new_client(self) -> PipelinedRedis | RedisPyCalls:
        backend = self.cache._cache
        url = backend._servers[0]
        options = {k: v for k, v in backend._pool_options.items() if k != "parser_class"}
        parts = urlsplit(url)
        if parts.scheme == "redis" and not parts.query and parts.hostname:
            path = parts.path.lstrip("/")
            return PipelinedRedis(
                parts.hostname,
                parts.port or 6379,
                int(path) if path.isdigit() else 0,
                unquote(parts.username) if parts.username else None,
                unquote(parts.password) if parts.password is not None else None,
                float(options.get("socket_timeout") or 5.0),
            )
        import redis.asyncio

        return RedisPyCalls(redis.asyncio.Redis.from_url(url, **options))

    def _close_with_loop(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        """Close ``client`` when ``loop`` shuts down: a loop finalises the async generators suspended in it
        (``shutdown_asyncgens``), so a short-lived loop (a Celery task's ``asyncio.run``) leaves no socket."""

        async def closer() -> Any:
            try:
                yield
            finally:
                await client.aclose()

        generator = closer()
        with contextlib.suppress(StopIteration):
            generator.__anext__().send(None)  # registered with the loop, parked on its ``yield``
        self._closers.setdefault(loop, []).append(generator)


cache_redis = CacheRedis()
