"""/health and /health/full against real services, including one stopped under the test."""

from __future__ import annotations

import subprocess

import pytest
from django.core.cache import cache
from django.test import Client
from pytest_django import Settings

from spignosapi.tasks import BEAT_HEARTBEAT_KEY
from tests.helpers import private_redis, wait_until

pytestmark = pytest.mark.django_db

CHECKS = {"database", "redis", "broker", "workers", "beat", "channel_layer"}


def test_health_answers_ok_without_a_key() -> None:
    response = Client().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_full_names_a_stopped_redis_and_answers_503(settings: Settings) -> None:
    with private_redis() as (url, proc):
        settings.REDIS_URL = url
        proc.kill()
        proc.wait()
        response = Client().get("/health/full")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert set(body["checks"]) == CHECKS
    assert "redis" in body["down"]
    assert body["checks"]["redis"]["status"] == "error"
    assert "ConnectionError" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["status"] == "ok"


def test_health_full_never_shows_credentials_of_a_failing_dependency(settings: Settings) -> None:
    with private_redis() as (url, proc):
        settings.CELERY_BROKER_URL = url.replace("redis://", "redis://user:hunter2@")
        proc.kill()
        proc.wait()
        response = Client().get("/health/full")
    assert response.status_code == 503
    assert b"hunter2" not in response.content
    assert response.json()["checks"]["broker"]["status"] == "error"


def test_health_full_is_200_with_worker_and_beat_running(
    celery_worker: subprocess.Popen[bytes], celery_beat: subprocess.Popen[bytes]
) -> None:
    cache.delete(BEAT_HEARTBEAT_KEY)
    assert wait_until(lambda: cache.get(BEAT_HEARTBEAT_KEY) is not None, timeout=30), "beat never ran"
    response = Client().get("/health/full")
    body = response.json()
    assert response.status_code == 200, body
    assert body["down"] == []
    assert {name: check["status"] for name, check in body["checks"].items()} == dict.fromkeys(CHECKS, "ok")
    assert all(check["latency_ms"] >= 0 for check in body["checks"].values())


def test_health_full_names_missing_workers_when_none_runs(settings: Settings) -> None:
    with private_redis() as (url, _proc):
        # A broker no worker listens on: the ping goes unanswered.
        settings.CELERY_BROKER_URL = url
        response = Client().get("/health/full")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["workers"] == {
        "status": "error",
        "latency_ms": body["checks"]["workers"]["latency_ms"],
        "error": "no Celery worker answered a ping",
    }
