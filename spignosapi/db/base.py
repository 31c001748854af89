"""Django's PostgreSQL backend with its pool, answering at once while PostgreSQL is unreachable.

With a pool, a thread that needs a connection waits until the pool lends one, up to ``DB_POOL_TIMEOUT``.
That is right for a burst (connections come back within milliseconds) and wrong while PostgreSQL is down:
nothing comes back, so every request would hold its thread for the whole timeout before its 503 (without a
pool, the refused connection failed at once). So the pool's connections record whether the last attempt to
open one failed, and a thread first waits ``UNREACHABLE_WAIT_S``: if no connection came and the last attempt
failed, it gives up (``PoolTimeout``, an ``OperationalError``: 503 ``database_unavailable``); else it waits
for the rest of the timeout.

Everything else is Django's backend (``django.db.backends.postgresql``) and psycopg_pool's pool.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg import IsolationLevel
from psycopg_pool import ConnectionPool, PoolTimeout

UNREACHABLE_WAIT_S = 1.0


class Reachability:
    """Did this process's last attempt to open a PostgreSQL connection fail? (Written by the pool's threads;
    a bool is assigned atomically, and a reader one attempt late only waits longer.)"""

    unreachable = False


reachability = Reachability()


class PooledConnection(psycopg.Connection[Any]):
    """psycopg's connection, telling ``reachability`` how each attempt to open one went."""

    @classmethod
    def connect(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            conn = super().connect(*args, **kwargs)
        except Exception:
            reachability.unreachable = True
            raise
        reachability.unreachable = False
        return conn


def lend(pool: ConnectionPool[Any]) -> Any:
    """``pool.getconn()``, giving up after ``UNREACHABLE_WAIT_S`` if the database is unreachable."""
    started = time.monotonic()
    try:
        return pool.getconn(timeout=min(UNREACHABLE_WAIT_S, pool.timeout))
    except PoolTimeout:
        remaining = pool.timeout - (time.monotonic() - started)
        if reachability.unreachable or remaining <= 0:
            raise
    # A burst: the wait goes on (behind the threads that queued meanwhile) for the rest of the timeout.
    return pool.getconn(timeout=remaining)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        options = self.settings_dict["OPTIONS"].get("pool")
        if isinstance(options, dict) and "connection_class" not in options:
            options["connection_class"] = PooledConnection
        return super().pool

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        pool = self.pool
        if pool is None or "isolation_level" in self.settings_dict["OPTIONS"]:
            return super().get_new_connection(conn_params)
        # Django's own steps for a pooled connection with the default isolation level, the wait aside.
        self.isolation_level = IsolationLevel.READ_COMMITTED
        pool.open()
        return lend(pool)
