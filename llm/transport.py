"""Outbound HTTP for the providers: the one place that opens connections, bounds them in time and turns
transport failures into `LLMError`s. A provider speaks its wire format and asks its `Transport` for the rest.

Two client libraries, each where it pays:

- aiohttp for the async chat calls, the gateway's hot path: one pooled session per event loop costs a
  fraction of the CPU per call that httpx's async client does (`Transport.post`, `sse_events`).
- httpx2, the HTTP client the openai SDK is built on, for the sync calls (Celery workers, sync code) and
  for the async calls that go through the SDK (Azure deployments, embeddings): `client()`, `async_client()`.

Timeouts are explicit: `connect_timeout_s` to connect, a total budget per call (the provider's `timeout_s`
or the request's), and for a stream a first-token budget (`first_token_timeout_s`). Pools are made lazily,
one per provider (and per event loop for async clients, which are bound to the loop that opened their
connections), and closed by `close` / `aclose`; an aiohttp session also closes when its loop shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Generic, TypeVar, cast

import aiohttp
import httpx2
from openai._streaming import ServerSentEvent, SSEDecoder

from .errors import InvalidResponseError, LLMConnectionError, LLMError, LLMTimeoutError
from .types import ProviderConfig

__all__ = [
    "AIOHTTP_ERRORS",
    "HTTPX_ERRORS",
    "AsyncClientCache",
    "StatusError",
    "Transport",
    "body_chunks",
    "redact",
    "sse_events",
    "timeout_error",
]

_C = TypeVar("_C")

# The exceptions a transport call may raise besides `StatusError`: the providers catch these (and
# TimeoutError, from their deadlines) and hand them to `Transport.error`. ValueError: a body that is not JSON.
HTTPX_ERRORS = (httpx2.HTTPError, ValueError)
AIOHTTP_ERRORS = (aiohttp.ClientError, ValueError)


class StatusError(Exception):
    """A non-2xx answer on the aiohttp path, its body read whole (the connection is back in the pool).

    The provider decodes `body` in its wire format into the right `LLMError`.
    """

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers


def redact(message: str, secret: str | None) -> str:
    """`message` without `secret` (an API key that an upstream or a client library quoted back)."""
    if secret and secret in message:
        message = message.replace(secret, "***")
    return message


def timeout_error(provider: str, phase: str, model: str) -> LLMTimeoutError:
    return LLMTimeoutError(f"provider {provider!r} timed out ({phase})", phase=phase, provider=provider, model=model)


class AsyncClientCache(Generic[_C]):
    """One async client per event loop.

    An async connection pool is bound to the loop that opened its connections; reusing it from another
    loop (asyncio.run per Celery task, async_to_sync) fails. The common case - one loop per process - is a
    single identity check.
    """

    def __init__(self, factory: Callable[[], _C]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _C] = weakref.WeakKeyDictionary()
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _C] | None = None
        self._lock = threading.Lock()

    def get(self) -> _C:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = self._factory()
                self._clients[loop] = client
            self._last = (weakref.ref(loop), client)
            return client

    async def aclose_current(self, closer: Callable[[_C], Awaitable[None]]) -> None:
        """Close the running loop's client; clients of other loops are dropped with their loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
            self._last = None
        if client is not None:
            await closer(client)


class Transport:
    """One provider's connections and time budgets. Thread-safe, usable from several event loops.

    `headers` are sent on every request of the httpx2 clients (the aiohttp path takes them per call, and a
    client library wrapping `client()` sends its own). `follow_redirects` as the wrapping library expects.
    """

    def __init__(
        self, config: ProviderConfig, *, headers: Mapping[str, str] | None = None, follow_redirects: bool = False
    ) -> None:
        self.config = config
        self.timeout = httpx2.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._stream_timeout = self.timeout
        if config.first_token_timeout_s is not None and config.first_token_timeout_s < config.timeout_s:
            # The sync stream cannot bound the first token alone: its socket read timeout bounds every gap.
            self._stream_timeout = httpx2.Timeout(
                config.timeout_s, connect=config.connect_timeout_s, read=config.first_token_timeout_s
            )
        self._limits = httpx2.Limits(
            max_connections=config.max_connections, max_keepalive_connections=config.max_connections
        )
        self._headers = dict(headers) if headers else None
        self._follow_redirects = follow_redirects
        self._sync: httpx2.Client | None = None
        self._sync_lock = threading.Lock()
        self._async: AsyncClientCache[httpx2.AsyncClient] = AsyncClientCache(self._make_async_client)
        self._sessions: AsyncClientCache[aiohttp.ClientSession] = AsyncClientCache(self._make_session)

    # -- time budgets ----------------------------------------------------------------------------------

    def total_timeout(self, timeout_s: float | None) -> float:
        """The total budget of a call: the request's `timeout_s` when set, else the provider's."""
        return timeout_s if timeout_s is not None else self.config.timeout_s

    def first_token_binds(self, timeout_s: float | None) -> bool:
        """Whether a stream's first token has a budget of its own, shorter than the total."""
        ftt = self.config.first_token_timeout_s
        return ftt is not None and ftt < self.total_timeout(timeout_s)

    def stream_deadlines(self, timeout_s: float | None) -> tuple[float, float]:
        """(first-token deadline, total deadline) on the running loop's clock, for an async stream."""
        now = asyncio.get_running_loop().time()
        total = now + self.total_timeout(timeout_s)
        first_token_s = self.config.first_token_timeout_s
        return (total if first_token_s is None else min(total, now + first_token_s)), total

    def httpx_timeout(self, timeout_s: float | None, *, stream: bool) -> httpx2.Timeout:
        """The httpx2 timeouts of one call; on a stream the read timeout is the first-token budget."""
        if timeout_s is None:
            return self._stream_timeout if stream else self.timeout
        read = timeout_s
        if stream and self.config.first_token_timeout_s is not None:
            read = min(read, self.config.first_token_timeout_s)
        connect = min(self.config.connect_timeout_s, timeout_s)
        return httpx2.Timeout(timeout_s, connect=connect, read=read)

    # -- pools -----------------------------------------------------------------------------------------

    def client(self) -> httpx2.Client:
        """The sync client, made on first use."""
        client = self._sync
        if client is None:
            with self._sync_lock:
                client = self._sync
                if client is None:
                    client = self._sync = httpx2.Client(
                        headers=self._headers,
                        timeout=self.timeout,
                        limits=self._limits,
                        follow_redirects=self._follow_redirects,
                    )
        return client

    def async_client(self) -> httpx2.AsyncClient:
        """The running loop's httpx2 client."""
        return self._async.get()

    def _make_async_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=self._headers, timeout=self.timeout, limits=self._limits, follow_redirects=self._follow_redirects
        )

    def _make_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.config.max_connections, ttl_dns_cache=300)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_s),
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )
        _close_with_loop(session)
        return session

    def close(self) -> None:
        """Close the sync client (async clients are closed by `aclose`)."""
        with self._sync_lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the sync client and the running loop's async clients."""
        self.close()

        async def close_client(client: httpx2.AsyncClient) -> None:
            await client.aclose()

        async def close_session(session: aiohttp.ClientSession) -> None:
            await session.close()

        await self._async.aclose_current(close_client)
        await self._sessions.aclose_current(close_session)

    # -- the aiohttp path ------------------------------------------------------------------------------

    async def post(
        self, url: str, data: bytes, headers: Mapping[str, str], *, timeout_s: float | None
    ) -> aiohttp.ClientResponse:
        """POST `data` on the running loop's session; a non-2xx answer raises `StatusError`.

        Only connecting is bounded here (by `connect_timeout_s`, or `timeout_s` if shorter): the caller
        bounds the whole call with its deadlines, and must `release()` the response it gets.
        """
        connect = self.config.connect_timeout_s
        if timeout_s is not None:
            connect = min(connect, timeout_s)
        response = await self._sessions.get().post(
            url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect)
        )
        if not 200 <= response.status < 300:
            try:
                raw = await response.read()
            finally:
                response.release()
            raise StatusError(response.status, raw, response.headers)
        return response

    # -- errors ----------------------------------------------------------------------------------------

    def error(
        self, exc: BaseException, model: str, *, in_body: bool = False, first_token_pending: bool = False
    ) -> LLMError:
        """Our error for an HTTP-client, timeout or decoding exception of either library.

        `in_body`: raised while reading the body of a 200 answer (a broken-off stream is an invalid
        response, not a connection failure). `first_token_pending`: a read timeout now means the
        first-token budget ran out.
        """
        name = self.config.name
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, httpx2.ConnectTimeout | aiohttp.ConnectionTimeoutError):
            return timeout_error(name, "connect", model)
        if isinstance(exc, httpx2.TimeoutException | TimeoutError):  # aiohttp's ServerTimeoutError included
            return timeout_error(name, "first_token" if first_token_pending else "total", model)
        if isinstance(exc, ValueError) and not isinstance(exc, httpx2.HTTPError | aiohttp.ClientError):
            message = redact(f"the upstream sent invalid JSON: {exc}", self.config.api_key)
            return InvalidResponseError(message, provider=name, model=model)
        detail = redact(str(exc) or type(exc).__name__, self.config.api_key)
        if in_body:
            return InvalidResponseError(f"the upstream response broke off: {detail}", provider=name, model=model)
        return LLMConnectionError(
            f"cannot reach provider {name!r} at {self.config.safe_base_url}: {detail}", provider=name, model=model
        )


def sse_events(response: aiohttp.ClientResponse) -> AsyncGenerator[ServerSentEvent, None]:
    """The server-sent events of an aiohttp response, decoded as the openai SDK decodes them."""
    return cast(AsyncGenerator[ServerSentEvent, None], SSEDecoder().aiter_bytes(body_chunks(response.content)))


async def body_chunks(content: aiohttp.StreamReader) -> AsyncGenerator[bytes, None]:
    """``content.iter_any()``, except that the bytes that arrived together with a cut connection are yielded
    before its error: aiohttp raises the error first and drops them, so the last chunks an upstream sent
    before it went away were lost whenever the reader was a little behind."""
    while True:
        try:
            data = await content.readany()
        except aiohttp.ClientPayloadError:
            rest = content._read_nowait(-1)  # what was received before the cut (read_nowait raises first too)
            if rest:
                yield rest
            raise
        if not data:
            return
        yield data


# Per event loop, the async generators that close its sessions (see `_close_with_loop`).
_session_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[AsyncGenerator[None, None]]] = (
    weakref.WeakKeyDictionary()
)


def _close_with_loop(session: aiohttp.ClientSession) -> None:
    """Close `session` when its event loop shuts down (`asyncio.run` returning, a server stopping).

    An event loop finalises the async generators still suspended in it before closing
    (`shutdown_asyncgens`), so one parked on a `yield` closes the session cleanly there - instead of
    aiohttp reporting an unclosed session when a short-lived loop (a Celery task's) is collected.
    """

    async def closer() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await session.close()

    generator = closer()
    step = generator.__anext__()  # the loop's first-iteration hook registers the generator here
    with contextlib.suppress(StopIteration):
        step.send(None)  # runs to the `yield` without suspending
    _session_closers.setdefault(asyncio.get_running_loop(), []).append(generator)
