"""Process-local snapshots of rarely-changing tables, invalidated across processes through Redis.

The hot path must not query the database for API keys or routing configuration on every request. A
``Snapshot`` keeps the loaded value in memory and, at most once per ``check_interval`` seconds, reads a
version number from Redis; any process that changes the underlying rows calls ``bump()``, which stores a new
random version, so every process reloads within ``check_interval``. The process that bumps reloads at once.

Async callers use ``aget()``: no I/O while the value is fresh, else one thread does the check for every
request of the event loop that needs it at that moment (instead of each taking a thread of its own).
The version is read through one connection pool per process (``django.core.cache.cache`` would open a
new one for every request, its instances being per request context).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches

T = TypeVar("T")
logger = logging.getLogger(__name__)
_cache: Any = None


def _versions() -> Any:
    """The default cache, as one process-wide instance (and so one connection pool)."""
    global _cache
    if _cache is None:
        _cache = caches.create_connection("default")
    return _cache


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

    @property
    def check_interval(self) -> float:
        if self._check_interval is not None:
            return self._check_interval
        return float(getattr(settings, "SNAPSHOT_CHECK_SECONDS", 1.0))

    @property
    def _key(self) -> str:
        return f"snapshot:{self.name}:version"

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
        loop = asyncio.get_running_loop()
        refresh = self._refreshes.get(loop)
        if refresh is None or refresh.done():
            refresh = self._refreshes[loop] = loop.create_task(sync_to_async(self.get, thread_sensitive=False)())
        return await asyncio.shield(refresh)

    def get(self, *, recheck: bool = False) -> T:
        """The value, reloaded if another process bumped the version; ``recheck`` reads the version now."""
        now = self.clock()
        value = self._value
        if value is not None and not recheck and now - self._checked_at < self.check_interval:
            return value
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
        with self._lock:
            self._value = None
            self._version = None
            self._checked_at = float("-inf")
