"""Fixtures for the llm tests: the fake upstream served on a free loopback port for the whole session."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from llm.fake_upstream import start_in_thread


@pytest.fixture(scope="session")
def fake_upstream_url() -> Iterator[str]:
    """Base URL of the running fake upstream, without ``/v1`` (e.g. ``http://127.0.0.1:41234``)."""
    url, stop = start_in_thread(port=0, seed=0)
    try:
        yield url
    finally:
        stop()


def _reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/_fake/reset", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


@pytest.fixture
def fake_reset(fake_upstream_url: str) -> Iterator[str]:
    """Clears the fake's stats, per-model counters and configs before (and after) the test; yields the URL."""
    _reset(fake_upstream_url)
    yield fake_upstream_url
    _reset(fake_upstream_url)
