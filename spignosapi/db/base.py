"""Django's PostgreSQL backend with its pool, answering at once while PostgreSQL is unreachable.

With a pool, a thread that needs a connection waits until the pool lends one, up to ``DB_POOL_TIMEOUT``.
That is right for a burst (connections come back within milliseconds) and wrong while PostgreSQL is down:
nothing comes back, so every request would hold its thread for the whole timeout before its 503 (without a
pool, the refused connection failed at once). So the pool's connections record whether the last attempt to
open one failed, and while it did a thread waits at most ``UNREACHABLE_WAIT_S``: long enough for the attempt
that its own wait starts to succeed once PostgreSQL is back.

Everything else is Django's backend (``django.db.backends.postgresql``) and psycopg_pool's pool.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from django.db.backends.postgresql import base

UNREACHABLE_WAIT_S = 1.0


class Reachability:
    """Did this process's last attempt to open a PostgreSQL connection fail? (Written by the pool's threads.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.unreachable = False

    def record(self, *, failed: bool) -> None:
        with self._lock:
            self.unreachable = failed


reachability = Reachability()


class PooledConnection(psycopg.Connection[Any]):
    """psycopg's connection, telling ``reachability`` how each attempt to open one went."""

    @classmethod
    def connect(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            conn = super().connect(*args, **kwargs)
        except Exception:
            reachability.record(failed=True)
            raise
        reachability.record(failed=False)
        return conn


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        options = self.settings_dict["OPTIONS"].get("pool")
        if isinstance(options, dict) and "connection_class" not in options:
            options["connection_class"] = PooledConnection
        return super().pool

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        pool = self.pool
        if pool is not None and reachability.unreachable:
            # A short wait: PoolTimeout (an OperationalError: 503 database_unavailable) unless a connection comes.
            pool.open()
            pool.putconn(pool.getconn(timeout=UNREACHABLE_WAIT_S))
        return super().get_new_connection(conn_params)
