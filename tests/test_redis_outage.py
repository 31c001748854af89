"""Redis stopped under a running gateway: generation goes on with the limits failing open (a warning is
logged, routing/limits.py), and /health/full answers 503 naming redis. Both come back when Redis does."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from accounts.services import apikey_create
from tests.fixtures import Fake, Gateway, _stop, start_gateway
from tests.helpers import free_port, redis_server_binary, wait_until
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)


def start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    assert wait_until(lambda: _pings(client), timeout=10), "redis did not start"
    return proc


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture
def outage(seeded: Fake, tmp_path: Path) -> Iterator[tuple[Gateway, int, subprocess.Popen[bytes], Path]]:
    port = free_port()
    redis_proc = start_redis(port)
    log = tmp_path / "gateway.log"
    server = start_gateway({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "LOG_LEVEL": "WARNING"}, log=log)
    try:
        yield server, port, redis_proc, log
    finally:
        _stop(server.proc)
        redis_proc.kill()
        redis_proc.wait()


def test_generation_goes_on_and_health_names_redis(
    outage: tuple[Gateway, int, subprocess.Popen[bytes], Path], fake: Fake
) -> None:
    gateway, port, redis_proc, log = outage
    _, raw = apikey_create(name="k", rpm_limit=100)
    body = {"prompt": "hello", "max_tokens": 4}
    assert call("POST", gateway.url + "/api/v1/generate", body, key=raw).status == 200
    assert call("GET", gateway.url + "/health/full").status in (200, 503)  # workers/beat are not running here

    # Stop Redis (as an outage would: the process is gone, connections refused).
    redis_proc.kill()
    redis_proc.wait()

    replies = [call("POST", gateway.url + "/api/v1/generate", body, key=raw, timeout=30) for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 200], [r.text for r in replies]
    assert all(r.json()["meta"]["completion_tokens"] == 4 for r in replies)
    assert fake.stats()["requests"] == {"demo-fast": 4}
    health = call("GET", gateway.url + "/health/full", timeout=30)
    assert health.status == 503
    assert health.json()["checks"]["redis"]["status"] == "error" and "redis" in health.json()["down"]
    assert "rate limiter unavailable; letting the request through" in log.read_text()

    # Redis back on the same port: the limits count again.
    restarted = start_redis(port)
    try:
        assert wait_until(
            lambda: call("GET", gateway.url + "/health/full").json()["checks"]["redis"]["status"] == "ok", timeout=20
        )
        assert call("POST", gateway.url + "/api/v1/generate", body, key=raw).status == 200
    finally:
        restarted.kill()
        restarted.wait()
