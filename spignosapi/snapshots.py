"""Process-local snapshots of rarely-changing tables, invalidated across processes through Redis.

The hot path must not query the database for API keys or routing configuration on every request. A
``Snapshot`` keeps the loaded value in memory and, at most once per ``check_interval`` seconds, reads a
version number from Redis; any process that changes the underlying rows calls ``bump()``, which stores a new
random version, so every process reloads within ``check_interval``. The process that bumps reloads at once.

Async callers use ``aget()``: no I/O while the value is fresh, else one thread does the check for every
request of the event loop that needs it at that moment (instead of each taking a thread of its own).
The version is read through one connection pool per process (``django.core.cache.cache`` would open a
new one for every request, its instances being per request context).

Synchronous code can run on an event loop too (a helper an async view calls), and there ``get()`` must not
do I/O: Django refuses a query there (``SynchronousOnlyOperation``, a 500 right after any config change),
and a Redis read would stall every request of the loop. So on a loop ``get()`` serves the value it has,
even one past its check or invalidated by a change, and starts the loop's refresh in a thread, as
``aget()`` does; the next reader gets the new value. Only a snapshot that has no value yet (or a
``recheck``) makes the loop wait, for a thread that loads it. ``invalidate()`` therefore keeps the value
while marking it due for a reload.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.db import connections, transaction

T = TypeVar("T")
logger = logging.getLogger(__name__)
_cache: Any = None
# Every snapshot of the process, by name (a test reloads each of them from an event loop).
registry: weakref.WeakValueDictionary[str, Snapshot[Any]] = weakref.WeakValueDictionary()


def _versions() -> Any:
    """The default cache, as one process-wide instance (and so one connection pool)."""
    global _cache
    if _cache is None:
        _cache = caches.create_connection("default")
    return _cache


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _version_key(name: str) -> str:
    return f"snapshot:{name}:version"


def _log_failed_refresh(name: str, refresh: asyncio.Task[Any]) -> None:
    """Retrieve a refresh's exception, so one that nobody awaited is not reported as never retrieved."""
    if not refresh.cancelled() and refresh.exception() is not None:
        logger.warning("snapshot %s: refresh failed: %s", name, refresh.exception())


class Snapshot(Generic[T]):
    def __init__(
        self,
        name: str,
        loader: Callable[[], T],
        *,
        check_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.loader = loader
        self._check_interval = check_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._version: str | None = None
        self._checked_at = float("-inf")
        self._refreshes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[T]] = (
            weakref.WeakKeyDictionary()
        )
        registry[name] = self

    @property
    def check_interval(self) -> float:
        if self._check_interval is not None:
            return self._check_interval
        return float(getattr(settings, "SNAPSHOT_CHECK_SECONDS", 1.0))

    @property
    def _key(self) -> str:
        return _version_key(self.name)

    def _remote_version(self) -> str:
        try:
            return str(_versions().get(self._key) or "")
        except Exception:  # Redis down: keep serving what we have rather than failing every request
            logger.warning("snapshot %s: cannot read its version from Redis", self.name)
            return self._version if self._version is not None else ""

    def get_if_fresh(self) -> T | None:
        """The value when it needs no reload (no I/O at all), else ``None``: safe inside an event loop."""
        value = self._value
        if value is not None and self.clock() - self._checked_at < self.check_interval:
            return value
        return None

    async def aget(self) -> T:
        """``get()`` for the event loop: the check (a Redis read, maybe a reload) runs in a thread, shared by
        every caller of this loop that arrives while it runs (unless checks are asked for on every call)."""
        value = self.get_if_fresh()
        if value is not None:
            return value
        if self.check_interval <= 0:
            return await sync_to_async(self.get, thread_sensitive=False)()
        return await asyncio.shield(self._refresh(asyncio.get_running_loop()))

    def _refresh(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[T]:
        """The loop's refresh (``get()`` in a thread): the one running, or a new one."""
        refresh = self._refreshes.get(loop)
        if refresh is None or refresh.done():
            refresh = loop.create_task(sync_to_async(self.get, thread_sensitive=False)())
            refresh.add_done_callback(lambda task: _log_failed_refresh(self.name, task))
            self._refreshes[loop] = refresh
        return refresh

    def _get_on_loop(self, loop: asyncio.AbstractEventLoop, *, recheck: bool) -> T:
        """``get()`` called on an event loop's thread, where it may not do I/O (see the module docstring)."""
        value = self._value
        if value is not None and not recheck:
            self._refresh(loop)
            return value

        # Rare (a first read, a recheck): a thread of its own, whose connection goes with it.
        def load() -> T:
            try:
                return self.get(recheck=recheck)
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot") as thread:
            return thread.submit(load).result()

    def get(self, *, recheck: bool = False) -> T:
        """The value, reloaded if another process bumped the version; ``recheck`` reads the version now."""
        now = self.clock()
        value = self._value
        if value is not None and not recheck and now - self._checked_at < self.check_interval:
            return value
        loop = _running_loop()
        if loop is not None:
            return self._get_on_loop(loop, recheck=recheck)
        with self._lock:
            if self._value is not None and not recheck and now - self._checked_at < self.check_interval:
                return self._value
            version = self._remote_version()
            if self._value is None or version != self._version:
                self._value = self.loader()
                self._version = version
            self._checked_at = now
            return self._value

    def bump(self) -> None:
        """Call after changing the rows behind this snapshot (inside or after the transaction)."""
        try:
            _versions().set(self._key, uuid.uuid4().hex, timeout=None)
        except Exception:
            logger.warning("snapshot %s: cannot bump its version in Redis", self.name)
        self.invalidate()

    def invalidate(self) -> None:
        """Reload at the next read (the value is kept for readers on an event loop meanwhile)."""
        with self._lock:
            self._version = None
            self._checked_at = float("-inf")


def snapshot_changed(name: str) -> None:
    """This process reloads the snapshot ``name`` now; every other one once the change is committed.

    For a writer below the snapshot's owner, which names it instead of importing it: energy coefficients
    travel in the routing snapshot, and the energy app sits below routing. A process that never made the
    snapshot has nothing of its own to reload; the others are told all the same.
    """
    snapshot = registry.get(name)
    if snapshot is not None:
        snapshot.invalidate()
        transaction.on_commit(snapshot.bump)
        return

    def bump() -> None:
        try:
            _versions().set(_version_key(name), uuid.uuid4().hex, timeout=None)
        except Exception:
            logger.warning("snapshot %s: cannot bump its version in Redis", name)

    transaction.on_commit(bump)
