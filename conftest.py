"""Test-wide setup: real PostgreSQL and Redis must answer, or the run stops (never a silent skip)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

pytest_plugins = ["tests.fixtures"]


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    problems = []
    if not database_url.startswith("postgres"):
        problems.append("DATABASE_URL must name a PostgreSQL server (make test sets it)")
    elif not _reachable(database_url, 5432):
        problems.append(f"PostgreSQL is not reachable at {urlsplit(database_url).netloc}")
    if not redis_url.startswith("redis"):
        problems.append("REDIS_URL must name a Redis server (make test sets it)")
    elif not _reachable(redis_url, 6379):
        problems.append(f"Redis is not reachable at {urlsplit(redis_url).netloc}")
    if problems:
        pytest.exit("the test services are missing: " + "; ".join(problems), returncode=3)
    _flush_through_deadlocks()


def _flush_through_deadlocks() -> None:
    """A transactional test ends by emptying every table (one TRUNCATE, which locks them one after another).
    The session's worker and servers may still be finishing what the test queued, in transactions that lock
    two of those tables in another order: PostgreSQL then finds a deadlock and cancels one side. When that is
    the TRUNCATE, it is tried again once the worker's transaction has ended, instead of failing the test and
    leaving rows for the next one."""
    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test import TransactionTestCase

    # A private method of Django's, which django-stubs does not declare.
    empty_tables: Callable[[TransactionTestCase], None] = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]

    def _fixture_teardown(self: TransactionTestCase) -> None:
        for attempt in range(1, 6):
            try:
                empty_tables(self)
                return
            except CommandError as exc:
                if (
                    attempt == 5
                    or not isinstance(exc.__cause__, OperationalError)
                    or "deadlock" not in str(exc.__cause__)
                ):
                    raise
                time.sleep(0.2 * attempt)

    TransactionTestCase._fixture_teardown = _fixture_teardown  # type: ignore[attr-defined]  # as above


@pytest.hookimpl(trylast=True)  # after pytest-django has put the database tests in its order
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright keeps an event loop running in the main thread until the session
    ends, and tests that call ``asyncio.run`` cannot run after it has started."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))
