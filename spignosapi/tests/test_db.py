"""spignosapi/db: Django's pooled PostgreSQL backend, which answers at once while the database is unreachable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.db.utils import ConnectionHandler

from spignosapi.db import base
from tests.helpers import free_port


@pytest.fixture
def gone(django_db_blocker: Any) -> Iterator[Any]:
    """A pooled connection to a port where nothing listens (PostgreSQL stopped), with a 30 s pool timeout."""
    database = dict(settings.DATABASES["default"])
    database.update(PORT=free_port(), OPTIONS={"pool": {"min_size": 1, "max_size": 2, "timeout": 30.0, "name": "gone"}})
    handler = ConnectionHandler({"default": settings.DATABASES["default"], "gone": database})
    connection = handler["gone"]
    try:
        with django_db_blocker.unblock():
            yield connection
    finally:
        # The connection pool (Django 5.1's PostgreSQL backend) is not declared by django-stubs.
        connection.close_pool()  # type: ignore[attr-defined]
        base.reachability.unreachable = False


@pytest.mark.django_db
def test_the_default_database_lends_pooled_connections_through_this_backend() -> None:
    assert settings.DATABASES["default"]["ENGINE"] == "spignosapi.db"
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 0  # a pool lends connections: no thread keeps one
    pool = connection.pool  # type: ignore[attr-defined]  # not declared by django-stubs
    assert (pool.min_size, pool.max_size, pool.timeout) == (
        settings.DB_POOL_MIN_SIZE,
        settings.DB_POOL_MAX_SIZE,
        settings.DB_POOL_TIMEOUT,
    )
    assert pool.connection_class is base.PooledConnection
    assert isinstance(connection.connection, base.PooledConnection)


def test_an_unreachable_database_is_an_error_after_the_short_wait_not_the_pool_timeout(gone: Any) -> None:
    started = time.monotonic()
    with pytest.raises(OperationalError, match="couldn't get a connection"):
        gone.ensure_connection()
    # The pool's timeout is 30 s: the thread gave up after its first wait, the attempt to connect having failed.
    assert time.monotonic() - started < 30 / 2
    assert base.reachability.unreachable is True

    started = time.monotonic()
    with pytest.raises(OperationalError):
        gone.ensure_connection()
    assert time.monotonic() - started < 30 / 2
