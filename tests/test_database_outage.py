"""PostgreSQL unreachable: the gateway still serves /health, and everything that needs the database answers
a clear 503 in the error envelope (never a traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import Gateway, _stop, start_gateway
from tests.helpers import free_port
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_database(tmp_path: Path) -> Iterator[tuple[Gateway, Path]]:
    log = tmp_path / "gateway.log"
    # Nothing listens on that port: every connection attempt is refused, as when PostgreSQL is stopped.
    server = start_gateway({"DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/gone"}, log=log)
    try:
        yield server, log
    finally:
        _stop(server.proc)


def test_a_missing_database_is_a_clear_503(no_database: tuple[Gateway, Path]) -> None:
    gateway, _ = no_database
    assert call("GET", gateway.url + "/health").json() == {"status": "ok"}
    health = call("GET", gateway.url + "/health/full", timeout=30)
    assert health.status == 503 and "database" in health.json()["down"]
    for method, path, body in [
        ("POST", "/api/v1/generate", {"prompt": "hi"}),
        ("POST", "/v1/chat/completions", {"model": "router", "messages": [{"role": "user", "content": "hi"}]}),
        ("GET", "/api/v1/rag/collections", None),
        ("GET", "/api/v1/platform-status", None),
    ]:
        reply = call(method, gateway.url + path, body, key="spg-any-key-at-all", timeout=30)
        assert reply.status == 503, (path, reply.status, reply.text)
        error = reply.json()["error"]
        assert (error["type"], error["code"]) == ("service_unavailable", "database_unavailable"), (path, error)
        assert "Traceback" not in reply.text and "psycopg" not in reply.text
