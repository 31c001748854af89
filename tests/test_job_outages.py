"""Async jobs through real faults (issue 18): a worker killed with SIGKILL, Redis killed, PostgreSQL stopped.

Each test owns the servers it breaks: a Redis server persisting with an append-only file (as docker-compose
runs it), and for the database outage a PostgreSQL cluster of its own. The gateway (uvicorn), a Celery
worker and beat are real processes on them, with a short lease and a sweep every second so a lost job is
found in seconds. What must hold: every submission is answered 202 or 503 (never another 5xx), every 202 is
a row and every row a 202, every accepted job ends with ``complete`` on its stream, and beat lives on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from accounts.services import apikey_create
from jobs.models import Job
from tests.fixtures import Fake, Gateway, _stop, start_beat, start_gateway, start_worker, stop_group
from tests.helpers import ROOT, django_env, python, wait_until
from tests.http import Reply, call, sse_events
from tests.servers import PostgresCluster, RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# Every process of the platform under test: a lease of 5 s (renewed every 1.7 s: a loaded machine does not
# make a live worker lose it), a sweep every second, a
# lost message sent again after 15 s, beat's heartbeat every second (for /health/full).
LIFECYCLE = {
    "JOB_LEASE_SECONDS": "5",
    "JOB_SWEEP_SECONDS": "1",
    "JOB_REDISPATCH_SECONDS": "15",
    "BEAT_HEARTBEAT_SECONDS": "1",
    "CELERY_BROKER_URL": "",  # the broker is the test's Redis
    "LOG_LEVEL": "WARNING",
}
OUTAGE_S = 20


class Platform:
    """Gateway, worker and beat on the given database and Redis; logs in ``logs``; all stopped by ``close``."""

    def __init__(
        self,
        logs: Path,
        *,
        redis_url: str,
        database_url: str | None = None,
        concurrency: int = 2,
        supervised: bool = False,
    ) -> None:
        self.logs = logs
        self.supervised = supervised
        self.env = {**LIFECYCLE, "REDIS_URL": redis_url, **({"DATABASE_URL": database_url} if database_url else {})}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.beat: subprocess.Popen[bytes] | None = None
        self.gateway: Gateway | None = None
        self.concurrency = concurrency

    def start(self) -> Platform:
        self.gateway = start_gateway(self.env, log=self.logs / "gateway.log")
        self.start_worker()
        self.beat = start_beat(log=self.logs / "beat.log", env=self.env)
        return self

    def start_worker(self) -> subprocess.Popen[bytes]:
        name = f"outage-{uuid.uuid4().hex[:8]}"
        worker = start_worker(
            name=name,
            log=self.logs / "worker.log",
            concurrency=self.concurrency,
            loglevel="WARNING",
            env=self.env,
            supervised=self.supervised,
        )
        self.workers.append(worker)
        return worker

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    def close(self) -> None:
        for proc in [*self.workers, *([self.beat] if self.beat else [])]:
            if proc.poll() is None:
                stop_group(proc)
        if self.gateway is not None:
            _stop(self.gateway.proc)


@pytest.fixture
def platforms(tmp_path: Path) -> Iterator[Callable[..., Platform]]:
    started: list[Platform] = []

    def make(**kwargs: Any) -> Platform:
        platform = Platform(tmp_path, **kwargs)
        started.append(platform)
        return platform.start()

    try:
        yield make
    finally:
        for platform in started:
            platform.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Submitter:
    """Submits an async job every ``every_s`` seconds from a thread, keeping every reply."""

    def __init__(self, url: str, raw: str, *, every_s: float = 0.25) -> None:
        self.url, self.raw, self.every_s = url, raw, every_s
        self.replies: list[Reply] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            body = {"prompt": "hello there", "max_tokens": 10}
            self.replies.append(call("POST", self.url + "/api/v1/generate/async", body, key=self.raw, timeout=60))
            self._stop.wait(self.every_s)

    def __enter__(self) -> Submitter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)

    def accepted(self) -> list[dict[str, Any]]:
        return [reply.json() for reply in self.replies if reply.status == 202]


def assert_202_or_503(replies: list[Reply], code: str) -> None:
    statuses = sorted({reply.status for reply in replies})
    assert set(statuses) <= {202, 503}, [(r.status, r.text) for r in replies if r.status not in (202, 503)]
    for reply in replies:
        if reply.status == 503:
            error = reply.json()["error"]
            assert (error["type"], error["code"]) == ("service_unavailable", code), reply.text


def stream_types(platform: Platform, raw: str, stream_url: str) -> list[str]:
    reply = call("GET", platform.url + stream_url, key=raw, timeout=60)
    assert reply.status == 200, reply.text
    return [event["type"] for event in sse_events(reply)]


def assert_streams_complete(platform: Platform, raw: str, accepted: list[dict[str, Any]], tokens: int) -> None:
    """Each stream: the chunks of the delivery that finished (after a ``reset`` if an earlier one had
    streamed), then ``complete``."""
    for body in accepted:
        types = stream_types(platform, raw, body["stream_url"])
        last_run = types[types.index("reset") + 1 :] if "reset" in types else types
        assert last_run == ["chunk"] * tokens + ["complete"], (body["job_id"], types)


def health(platform: Platform) -> dict[str, Any]:
    return dict(call("GET", platform.url + "/health/full", timeout=30).json())


# --- a worker killed with SIGKILL ---------------------------------------------------------------------------


def test_every_job_ends_within_90_s_after_its_worker_is_killed(
    seeded: Fake, redis_server: RedisServer, platforms: Callable[..., Platform]
) -> None:
    _, raw = apikey_create(name="k")
    seeded.configure(**{"demo-fast": {"tps": 10, "tokens": 30}})  # three seconds of tokens per job
    platform = platforms(redis_url=redis_server.url, concurrency=4)
    accepted = []
    for _ in range(30):
        reply = call("POST", platform.url + "/api/v1/generate/async", {"prompt": "hi", "max_tokens": 30}, key=raw)
        assert reply.status == 202, reply.text
        accepted.append(reply.json())
    ids = [body["job_id"] for body in accepted]
    assert wait_until(lambda: Job.objects.filter(pk__in=ids, status="running").count() >= 2, timeout=60)

    worker = platform.workers[0]
    processes = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = time.monotonic()
    assert wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes), 5)
    interrupted = set(Job.objects.filter(pk__in=ids, status="running").values_list("pk", flat=True))
    assert interrupted, "some jobs must have been running when the worker died"

    platform.start_worker()
    assert wait_until(lambda: Job.objects.filter(pk__in=ids, status__in=Job.FINISHED).count() == 30, timeout=90)
    assert time.monotonic() - killed_at < 90
    jobs = {str(job.pk): job for job in Job.objects.filter(pk__in=ids)}
    assert {job.status for job in jobs.values()} == {"succeeded"}
    assert all(jobs[str(pk)].deliveries == 2 for pk in interrupted)
    assert all(len(job.output.split()) == 30 for job in jobs.values())
    assert_streams_complete(platform, raw, accepted, tokens=30)


# --- a worker stopped with SIGTERM ---------------------------------------------------------------------------


def test_a_worker_told_to_stop_finishes_its_job_first(
    seeded: Fake, redis_server: RedisServer, platforms: Callable[..., Platform]
) -> None:
    _, raw = apikey_create(name="k")
    seeded.configure(**{"demo-fast": {"tps": 10, "tokens": 30}})
    platform = platforms(redis_url=redis_server.url, concurrency=1)
    body = call("POST", platform.url + "/api/v1/generate/async", {"prompt": "hi", "max_tokens": 30}, key=raw).json()
    assert wait_until(lambda: Job.objects.get(pk=body["job_id"]).status == "running", timeout=60)

    worker = platform.workers[0]
    os.kill(worker.pid, signal.SIGTERM)  # what docker stop and honcho send: a warm shutdown
    assert worker.wait(timeout=60) == 0
    job = Job.objects.get(pk=body["job_id"])
    assert (job.status, job.deliveries, len(job.output.split())) == ("succeeded", 1, 30)
    assert stream_types(platform, raw, body["stream_url"]) == ["chunk"] * 30 + ["complete"]


# --- Redis killed for 20 s ----------------------------------------------------------------------------------


def test_redis_killed_for_20_s_loses_no_accepted_job(
    seeded: Fake, redis_server: RedisServer, platforms: Callable[..., Platform]
) -> None:
    _, raw = apikey_create(name="k", rpm_limit=10_000)
    seeded.configure(**{"demo-fast": {"tps": 5}})  # two seconds per job: some are running when Redis dies
    # Supervised as under make run: a task acknowledged while the broker is gone can crash the worker (see
    # the test above), and its supervisor starts it again.
    platform = platforms(redis_url=redis_server.url, supervised=True)
    assert wait_until(lambda: health(platform)["checks"]["beat"]["status"] == "ok", timeout=60)

    with Submitter(platform.url, raw) as submitter:
        assert wait_until(lambda: len(submitter.accepted()) >= 8, timeout=60)
        redis_server.kill()
        down = len(submitter.replies)
        outage_ends = time.monotonic() + OUTAGE_S
        stats = call("GET", platform.url + "/api/v1/stats", key=raw)  # what the broker cannot tell is unknown
        assert stats.status == 200, stats.text
        assert (stats.json()["queues"], stats.json()["workers"]) == ({"high": None, "default": None, "low": None}, None)
        time.sleep(max(0.0, outage_ends - time.monotonic()))  # the outage itself: submissions go on meanwhile
        assert len(submitter.replies) > down, "no submission was made while Redis was down"
        redis_server.start()
        back = len(submitter.replies)
        assert wait_until(lambda: len(submitter.replies) >= back + 8, timeout=60)

    assert_202_or_503(submitter.replies, "broker_unavailable")
    accepted = submitter.accepted()
    ids = {body["job_id"] for body in accepted}
    assert set(Job.objects.values_list("pk", flat=True).iterator()) == {uuid.UUID(i) for i in ids}  # no orphan
    assert wait_until(lambda: Job.objects.filter(status__in=Job.FINISHED).count() == len(ids), timeout=120), list(
        Job.objects.values_list("status", "deliveries")
    )
    assert set(Job.objects.values_list("status", flat=True)) == {"succeeded"}
    assert_streams_complete(platform, raw, accepted, tokens=10)
    assert platform.beat is not None and platform.beat.poll() is None
    assert wait_until(lambda: health(platform)["checks"]["beat"]["status"] == "ok", timeout=30)


def test_a_retry_the_broker_refuses_waits_in_the_outbox_until_redis_is_back(
    seeded: Fake, redis_server: RedisServer, platforms: Callable[..., Platform], tmp_path: Path
) -> None:
    _, raw = apikey_create(name="k")
    # Both models of the chain fail their first request after 2 s (retryable): Redis dies meanwhile, so the
    # task's retry cannot be sent. The worker runs as make run runs it: acknowledging the task while the broker
    # is gone crashes Celery's consumer (kombu's Redis transport: AttributeError in _connparams) and the worker
    # exits; its supervisor starts it again (docker compose's restart policy does the same).
    seeded.configure(**{m: {"status": 503, "fail_first": 1, "latency_ms": 2000} for m in ("demo-fast", "demo-smart")})
    platform = platforms(redis_url=redis_server.url, supervised=True)
    reply = call("POST", platform.url + "/api/v1/generate/async", {"prompt": "hi", "max_tokens": 5}, key=raw)
    assert reply.status == 202, reply.text
    job_id = reply.json()["job_id"]
    assert wait_until(lambda: Job.objects.get(pk=job_id).status == "running", timeout=60)

    redis_server.kill()
    in_outbox = Job.objects.filter(pk=job_id, status="queued", dispatched_at=None, deliveries=1)
    assert wait_until(in_outbox.exists, timeout=60), Job.objects.values("status", "dispatched_at").get(pk=job_id)
    log = (tmp_path / "worker.log").read_text()
    assert "job retry not sent (the broker is unavailable); the sweeper sends it" in log

    redis_server.start()
    assert wait_until(lambda: Job.objects.get(pk=job_id).status in Job.FINISHED, timeout=60)
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.deliveries, len(job.output.split())) == ("succeeded", 2, 5)
    assert stream_types(platform, raw, reply.json()["stream_url"]) == ["chunk"] * 5 + ["complete"]


# --- PostgreSQL stopped for 20 s ----------------------------------------------------------------------------


def manage(database_url: str, redis_url: str, fake: Fake, *args: str) -> str:
    env = django_env(DATABASE_URL=database_url, REDIS_URL=redis_url, DEMO_UPSTREAM_URL=fake.url + "/v1")
    done = subprocess.run(
        [python(), "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def cluster(redis_server: RedisServer, fake: Fake) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the test's own, migrated and seeded (the demo provider on the fake upstream)."""
    server = PostgresCluster()
    try:
        server.init()
        manage(server.url, redis_server.url, fake, "migrate", "--noinput")
        manage(server.url, redis_server.url, fake, "seed_defaults")
        yield server
    finally:
        server.destroy()


def test_postgresql_stopped_for_20_s_loses_no_accepted_job(
    fake: Fake, redis_server: RedisServer, cluster: PostgresCluster, platforms: Callable[..., Platform]
) -> None:
    raw = manage(cluster.url, redis_server.url, fake, "createapikey", "outage", "--rpm", "10000").splitlines()[-1]
    fake.configure(**{"demo-fast": {"tps": 5}})  # two seconds per job: some are running when the database stops
    platform = platforms(redis_url=redis_server.url, database_url=cluster.url)
    assert wait_until(lambda: health(platform)["checks"]["beat"]["status"] == "ok", timeout=60)

    with Submitter(platform.url, raw) as submitter:
        assert wait_until(lambda: len(submitter.accepted()) >= 8, timeout=60)
        cluster.stop()
        down = len(submitter.replies)
        time.sleep(OUTAGE_S)  # the outage itself: submissions go on meanwhile
        assert len(submitter.replies) > down, "no submission was made while PostgreSQL was down"
        cluster.start()
        back = len(submitter.accepted())
        assert wait_until(lambda: len(submitter.accepted()) >= back + 8, timeout=60)

    assert_202_or_503(submitter.replies, "database_unavailable")
    assert any(reply.status == 503 for reply in submitter.replies)
    accepted = submitter.accepted()
    ids = {body["job_id"] for body in accepted}

    def statuses() -> dict[str, str]:
        with psycopg.connect(cluster.url) as connection:
            return dict(connection.execute("SELECT id::text, status FROM jobs_job").fetchall())

    assert set(statuses()) == ids  # every 202 is a row, and no 503 left one
    assert wait_until(lambda: set(statuses().values()) == {"succeeded"}, timeout=120), statuses()
    assert_streams_complete(platform, raw, accepted, tokens=10)
    assert platform.beat is not None and platform.beat.poll() is None
    assert wait_until(lambda: health(platform)["checks"]["beat"]["status"] == "ok", timeout=30)
