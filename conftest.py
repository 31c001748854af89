"""Test-wide setup: real PostgreSQL and Redis must answer, or the run stops (never a silent skip)."""

from __future__ import annotations

import os
import socket
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


@pytest.hookimpl(trylast=True)  # after pytest-django has put the database tests in its order
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright keeps an event loop running in the main thread until the session
    ends, and tests that call ``asyncio.run`` cannot run after it has started."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))
