"""Async jobs when workers are busy, die, or meet failing models — with worker processes the tests own.

Every test starts (and stops, or kills) its own Celery worker on a private broker that only this module's
gateway server shares: a throwaway redis-server, or a RabbitMQ vhost made for the test. The session's
``celery_worker`` therefore cannot take these tasks, and queue depths and worker lists are exact.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import redis
from django.conf import settings
from websockets.sync.client import ClientConnection, connect

from accounts.services import apikey_create
from jobs.models import Job
from jobs.streams import buffer_key
from ledger.models import UsageRecord
from rag.models import EmbeddingBatch
from tests.fixtures import Fake, Gateway, start_beat, start_gateway, start_worker
from tests.helpers import private_redis, wait_until
from tests.http import call, sse_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
IDLE_JOBS = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}


# --- processes the tests own -----------------------------------------------------------------------------


def stop(proc: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """Warm shutdown (of the whole process group for a worker: its pool children too), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()


class Worker:
    """``celery worker`` in its own process group, so that group can be killed as a whole."""

    def __init__(self, broker_url: str, *, concurrency: int, env: dict[str, str]) -> None:
        name = f"reliability-{uuid.uuid4().hex[:8]}"
        self.hostname = f"{name}@%h"
        self.proc = start_worker(
            name=name, log=None, broker_url=broker_url, concurrency=concurrency, loglevel="WARNING", env=env
        )

    @property
    def name(self) -> str:
        return self.hostname.replace("%h", os.uname().nodename)

    def kill(self) -> list[psutil.Process]:
        """``kill -9`` of the main process and its pool children at once; returns them for inspection."""
        processes = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return processes


class Workers:
    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.started: list[Worker] = []

    def start(self, *, concurrency: int = 1, broker_url: str | None = None, **env: str) -> Worker:
        worker = Worker(broker_url or self.broker_url, concurrency=concurrency, env=env)
        self.started.append(worker)
        return worker


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    with private_redis() as (url, _):
        yield url


@pytest.fixture(scope="module")
def jobs_gateway_server(django_db_setup: None, broker_url: str) -> Iterator[Gateway]:
    server = start_gateway({"CELERY_BROKER_URL": broker_url})
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture
def jobs_gateway(jobs_gateway_server: Gateway, seeded: Fake, broker_url: str) -> Gateway:
    """The module's gateway server, defaults seeded, and an empty private broker."""
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    client.close()
    return jobs_gateway_server


@pytest.fixture
def workers(jobs_gateway: Gateway, broker_url: str) -> Iterator[Workers]:
    """Starts workers on demand; stops every one still alive after the test (before the tables are flushed)."""
    started = Workers(broker_url)
    try:
        yield started
    finally:
        for worker in started.started:
            stop(worker.proc, group=True)


@pytest.fixture
def amqp_vhost_url() -> Iterator[str]:
    """A RabbitMQ vhost of this test's own (nothing else consumes or leaves messages there)."""
    parts = urlsplit(AMQP_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2).close()
    except OSError:
        pytest.fail(f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672}")
    vhost = f"spignos-test-{uuid.uuid4().hex[:8]}"
    user = parts.username or "guest"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        yield f"{parts.scheme}://{parts.netloc}/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, capture_output=True)


# --- helpers ----------------------------------------------------------------------------------------------


def submit(gateway: Gateway, raw: str, **body: Any) -> dict[str, Any]:
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": "hello there", **body}, key=raw)
    assert reply.status == 202, reply.text
    return dict(reply.json())


def wait_for_status(job_id: str, *statuses: str, timeout: float = 30) -> Job:
    assert wait_until(lambda: Job.objects.get(pk=job_id).status in statuses, timeout=timeout), Job.objects.get(
        pk=job_id
    ).status
    return Job.objects.get(pk=job_id)


def ws_connect(gateway: Gateway, path: str, raw: str) -> ClientConnection:
    url = gateway.url.replace("http://", "ws://") + path
    return connect(url, additional_headers={"Authorization": f"Bearer {raw}"}, open_timeout=10)


def ws_until_end(ws: ClientConnection, timeout: float = 30) -> list[dict[str, Any]]:
    """Messages up to and including ``complete`` or ``error``."""
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1]["type"] not in ("complete", "error"):
        messages.append(json.loads(ws.recv(timeout=timeout)))
    return messages


def buffered(session_id: str) -> int:
    """How many messages the worker has published to the session's replay buffer."""
    client = redis.Redis.from_url(settings.REDIS_CACHE_URL)
    try:
        return int(client.xlen(buffer_key(session_id)))
    finally:
        client.close()


def stats(gateway: Gateway, raw: str) -> dict[str, Any]:
    reply = call("GET", gateway.url + "/api/v1/stats", key=raw)
    assert reply.status == 200, reply.text
    return dict(reply.json())


def usage_rows(job_id: str, count: int) -> list[UsageRecord]:
    request_id = f"job-{job_id}"
    assert wait_until(lambda: UsageRecord.objects.filter(request_id=request_id).count() >= count)
    return list(UsageRecord.objects.filter(request_id=request_id).order_by("created_at"))


# --- 1. priorities ----------------------------------------------------------------------------------------


def test_a_high_priority_job_overtakes_low_ones_queued_before_it(
    jobs_gateway: Gateway, fake: Fake, workers: Workers
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-smart": {"tps": 10, "tokens": 20}})  # the slow job: about 2 s
    workers.start(concurrency=1)
    slow = submit(jobs_gateway, raw, model="demo/demo-smart", max_tokens=20)
    wait_for_status(slow["job_id"], "running")

    lows = [submit(jobs_gateway, raw, priority=-10, max_tokens=3)["job_id"] for _ in range(3)]
    high = submit(jobs_gateway, raw, priority=10, max_tokens=3)["job_id"]

    ids = [slow["job_id"], *lows, high]
    assert wait_until(lambda: Job.objects.filter(pk__in=ids, status="succeeded").count() == 5, timeout=30)
    jobs = {str(job.pk): job for job in Job.objects.filter(pk__in=ids)}
    assert [jobs[job_id].queue for job_id in [*lows, high]] == ["low", "low", "low", "high"]
    # (finished, started, id) of each job, in the order they finished.
    runs = sorted((j.finished_at, j.started_at, job_id) for job_id, j in jobs.items() if j.finished_at and j.started_at)
    assert [job_id for _, _, job_id in runs] == [slow["job_id"], high, *lows]
    assert jobs[high].created_at < runs[0][0], "the high job must be queued while the slow one runs"
    # One worker process with one slot: each job started after the one before it had finished.
    assert all(later[1] >= earlier[0] for earlier, later in zip(runs, runs[1:], strict=False))


# --- 2. a worker killed mid-stream ------------------------------------------------------------------------


def test_a_job_whose_worker_is_killed_mid_stream_is_redelivered_and_succeeds_once(
    jobs_gateway: Gateway, fake: Fake, workers: Workers, broker_url: str
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"tps": 10, "tokens": 100}})  # ten seconds of tokens
    first = workers.start(JOB_LEASE_SECONDS="3")
    body = submit(jobs_gateway, raw, max_tokens=100)

    with ws_connect(jobs_gateway, body["ws_url"], raw) as ws:
        # Kill once the worker has published three chunks (read from the replay buffer, not the socket).
        assert wait_until(lambda: buffered(body["session_id"]) >= 3, timeout=30)
        processes = first.kill()
        assert len(processes) == 2  # the main process and its one pool child
        assert wait_until(lambda: all(gone(p) for p in processes), timeout=5)
        interrupted = Job.objects.get(pk=body["job_id"])
        assert (interrupted.status, interrupted.deliveries) == ("running", 1)

        # The sweeper (beat sends it every second) finds the job's lease run out and sends it again, long
        # before Redis would hand the unacknowledged task out again (its visibility timeout: an hour).
        fake.configure(**{"demo-fast": {"tokens": 100}})
        workers.start()
        beat = start_beat(log=None, env={"CELERY_BROKER_URL": broker_url, "JOB_SWEEP_SECONDS": "1"})
        try:
            messages = ws_until_end(ws)
        finally:
            stop(beat, group=True)

    types = [m["type"] for m in messages]
    reset = types.index("reset")
    assert 3 <= reset < 100
    assert types == ["chunk"] * reset + ["reset"] + ["chunk"] * 100 + ["complete"]
    job = wait_for_status(body["job_id"], "succeeded")
    assert job.deliveries == 2
    assert job.error is None
    second_run = "".join(m["content"] for m in messages[reset + 1 : -1])
    assert second_run == job.output
    assert len(job.output.split()) == 100
    # The fake's words are deterministic: the killed run had streamed the start of the same answer.
    assert job.output.startswith("".join(m["content"] for m in messages[:reset]))
    assert messages[-1]["meta"]["completion_tokens"] == 100
    assert messages[-1]["meta"] == job.meta

    (row,) = usage_rows(body["job_id"], 1)
    assert (row.status, row.model, row.completion_tokens) == ("ok", "demo/demo-fast", 100)
    assert UsageRecord.objects.count() == 1
    # A late reader gets the same history, with one ``complete``.
    assert sse_events(call("GET", jobs_gateway.url + body["stream_url"], key=raw)) == messages


def test_an_embedding_batch_whose_worker_is_killed_is_redelivered_and_finished_once(
    jobs_gateway: Gateway, fake: Fake, workers: Workers
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-embed": {"latency_ms": 20000}})  # the worker is inside the upstream call
    first = workers.start()
    accepted = call(
        "POST",
        jobs_gateway.url + "/api/v1/embeddings/batches",
        {"model": "demo/demo-embed", "input": ["a", "b"]},
        key=raw,
    )
    assert accepted.status == 202, accepted.text
    batch_id = accepted.json()["id"]
    assert wait_until(lambda: EmbeddingBatch.objects.get(pk=batch_id).status == "running", timeout=30)
    assert wait_until(lambda: fake.stats()["requests"] == {"demo-embed": 1}, timeout=10)
    processes = first.kill()
    assert wait_until(lambda: all(gone(p) for p in processes), timeout=5)
    assert EmbeddingBatch.objects.get(pk=batch_id).deliveries == 1

    fake.configure(**{"demo-embed": {"latency_ms": 0}})
    workers.start(CELERY_VISIBILITY_TIMEOUT="3")
    assert wait_until(lambda: EmbeddingBatch.objects.get(pk=batch_id).status == "succeeded", timeout=30)
    batch = EmbeddingBatch.objects.get(pk=batch_id)
    assert (batch.deliveries, batch.dimensions, len(bytes(batch.vectors or b""))) == (2, 64, 2 * 64 * 4)
    result = call("GET", f"{jobs_gateway.url}/api/v1/embeddings/batches/{batch_id}", key=raw).json()
    assert [row["index"] for row in result["data"]] == [0, 1]
    records = UsageRecord.objects.filter(request_id=f"batch-{batch_id}")
    assert wait_until(records.exists, timeout=10)
    assert [(r.endpoint, r.status) for r in records] == [("embeddings_batch", "ok")]


# --- 3. RabbitMQ as the broker ----------------------------------------------------------------------------


def test_a_job_runs_end_to_end_with_rabbitmq_as_the_broker(seeded: Fake, workers: Workers, amqp_vhost_url: str) -> None:
    _, raw = apikey_create(name="k")
    seeded.configure(**{"demo-fast": {"tps": 50}})
    server = start_gateway({"CELERY_BROKER_URL": amqp_vhost_url})
    try:
        worker = workers.start(broker_url=amqp_vhost_url)
        body = submit(server, raw, max_tokens=8)
        with ws_connect(server, body["ws_url"], raw) as ws:
            messages = ws_until_end(ws)
        assert [m["type"] for m in messages] == ["chunk"] * 8 + ["complete"]
        reply = call("GET", server.url + body["status_url"], key=raw)
        assert reply.status == 200
        detail = reply.json()
        assert detail["status"] == "succeeded"
        assert detail["output"] == "".join(m["content"] for m in messages[:-1])
        assert detail["meta"] == messages[-1]["meta"]
        assert Job.objects.get(pk=body["job_id"]).deliveries == 1

        current = stats(server, raw)
        assert current["queues"] == {"high": 0, "default": 0, "low": 0}
        assert current["workers"] == [{"name": worker.name, "queues": ["default", "high", "low"]}]
    finally:
        stop(server.proc)


# --- 4. /api/v1/stats -------------------------------------------------------------------------------------


def test_stats_count_queued_jobs_per_queue_then_the_worker_that_drains_them(
    jobs_gateway: Gateway, workers: Workers
) -> None:
    _, raw = apikey_create(name="k")
    low = [submit(jobs_gateway, raw, priority=-7, max_tokens=2)["job_id"] for _ in range(2)]
    high = submit(jobs_gateway, raw, priority=9, max_tokens=2)["job_id"]

    waiting = stats(jobs_gateway, raw)
    assert waiting["queues"] == {"high": 1, "default": 0, "low": 2}
    assert waiting["workers"] == []
    assert waiting["jobs"] == {**IDLE_JOBS, "queued": 3}
    assert waiting["throughput"] == {"jobs_finished_last_minute": 0, "requests_last_minute": 0}

    worker = workers.start()
    for job_id in [*low, high]:
        wait_for_status(job_id, "succeeded")
    assert wait_until(lambda: UsageRecord.objects.count() == 3)

    drained = stats(jobs_gateway, raw)
    assert drained["queues"] == {"high": 0, "default": 0, "low": 0}
    assert drained["workers"] == [{"name": worker.name, "queues": ["default", "high", "low"]}]
    assert drained["jobs"] == {**IDLE_JOBS, "succeeded": 3}
    assert drained["throughput"] == {"jobs_finished_last_minute": 3, "requests_last_minute": 3}


# --- 5. failures before the first token -------------------------------------------------------------------


def test_a_retryable_failure_before_any_token_is_retried_and_then_succeeds(
    jobs_gateway: Gateway, fake: Fake, workers: Workers
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{name: {"status": 503, "fail_first": 1} for name in ("demo-fast", "demo-smart")})
    workers.start()
    body = submit(jobs_gateway, raw, max_tokens=5)

    job = wait_for_status(body["job_id"], "succeeded", "failed")
    assert (job.status, job.deliveries, job.error) == ("succeeded", 2, None)
    assert len(job.output.split()) == 5
    assert fake.stats()["requests"] == {"demo-fast": 2, "demo-smart": 1}
    failed, succeeded = usage_rows(body["job_id"], 2)
    assert (failed.status, failed.error_code, failed.model) == ("error", "all_models_failed", "")
    assert [a["outcome"] for a in failed.attempts] == ["error", "error"]
    assert (succeeded.status, succeeded.model, succeeded.completion_tokens) == ("ok", "demo/demo-fast", 5)
    # Nothing had been streamed by the failed attempt, so there is nothing to reset.
    events = sse_events(call("GET", jobs_gateway.url + body["stream_url"], key=raw))
    assert [e["type"] for e in events] == ["chunk"] * 5 + ["complete"]
    assert "".join(e["content"] for e in events[:-1]) == job.output


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "upstream_bad_request", "The upstream model refused the request: "),
        (401, "upstream_authentication_failed", "The upstream provider refused the platform's credentials."),
    ],
)
def test_a_non_retryable_failure_fails_the_job_at_once(
    jobs_gateway: Gateway, fake: Fake, workers: Workers, status: int, code: str, message: str
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"status": status}})
    workers.start()
    body = submit(jobs_gateway, raw)
    with ws_connect(jobs_gateway, body["ws_url"], raw) as ws:
        messages = ws_until_end(ws)

    job = wait_for_status(body["job_id"], "failed")
    assert job.deliveries == 1
    assert job.error is not None
    assert (job.error["code"], job.error["param"]) == (code, None)
    assert job.error["message"].startswith(message)
    assert [a["model"] for a in job.error["attempts"]] == ["demo/demo-fast"]
    assert messages == [{"type": "error", "error": job.error}]
    assert fake.stats()["requests"] == {"demo-fast": 1}
    (row,) = usage_rows(body["job_id"], 1)
    assert (row.status, row.error_code) == ("error", code)
    reply = call("GET", jobs_gateway.url + body["status_url"], key=raw)
    assert (reply.json()["status"], reply.json()["error"]) == ("failed", job.error)


def test_a_job_whose_task_breaks_is_failed_instead_of_left_queued(
    jobs_gateway: Gateway, fake: Fake, workers: Workers
) -> None:
    _, raw = apikey_create(name="k")
    body = submit(jobs_gateway, raw)
    Job.objects.filter(pk=body["job_id"]).update(request={})  # a row the task cannot use (no prompt)
    workers.start()
    with ws_connect(jobs_gateway, body["ws_url"], raw) as ws:
        messages = ws_until_end(ws)

    job = wait_for_status(body["job_id"], "failed")
    assert job.error == {
        "message": "The job failed on an internal error.",
        "type": "server_error",
        "code": "internal_error",
        "param": None,
    }
    assert messages == [{"type": "error", "error": job.error}]
    assert fake.stats()["requests"] == {}
