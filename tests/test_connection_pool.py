"""Each web process borrows PostgreSQL connections from a bounded pool: a burst queues for a connection
instead of opening one per thread, and a wait that outlasts DB_POOL_TIMEOUT is a clear 503."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from accounts.services import apikey_create
from jobs.models import Job
from tests.fixtures import Fake, Gateway, _stop, shared_database_url, start_gateway, start_worker, stop_group
from tests.helpers import private_redis, wait_until
from tests.http import Reply, call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker() -> Iterator[str]:
    """A broker of the test's own: the jobs submitted stay queued there (no worker takes them)."""
    with private_redis() as (url, _):
        yield url


def _connections(application_name: str) -> int:
    with psycopg.connect(shared_database_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [application_name],
        ).fetchone()
    assert row is not None
    return int(row[0])


class Peak:
    """The most connections a set of processes (by their application_name) held at once, sampled in a thread."""

    def __init__(self, application_name: str) -> None:
        self.application_name = application_name
        self.value = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        with psycopg.connect(shared_database_url(), autocommit=True) as conn:
            while not self._done.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = %s",
                    [self.application_name],
                ).fetchone()
                assert row is not None
                self.value = max(self.value, int(row[0]))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def test_a_burst_of_60_submissions_over_two_web_processes_stays_within_their_pools(seeded: Fake, broker: str) -> None:
    _, raw = apikey_create(name="burst")
    gateway = start_gateway(
        {
            "DATABASE_URL": shared_database_url() + "?application_name=pool-burst",
            "DB_POOL_MAX_SIZE": "3",
            # Each submission writes its job in its request's thread: the 30 per process queue for 4 threads too.
            "REQUEST_THREADS": "4",
            "CELERY_BROKER_URL": broker,
        },
        workers=2,
    )
    try:

        def submit(n: int) -> Reply:
            return call("POST", gateway.url + "/api/v1/generate/async", {"prompt": f"burst {n}"}, key=raw)

        with Peak("pool-burst") as peak, ThreadPoolExecutor(max_workers=60) as pool:
            replies = list(pool.map(submit, range(60)))
        after = _connections("pool-burst")
    finally:
        _stop(gateway.proc)

    assert [reply.status for reply in replies] == [202] * 60, [r.text for r in replies if r.status != 202][:3]
    assert Job.objects.filter(status="queued").count() == 60
    # Two processes, three connections each at most: the burst waited for connections (it held up to 60
    # threads' worth before the pool: 55 + 43 connections were seen, until PostgreSQL refused more).
    assert 1 <= peak.value <= 2 * 3
    assert after <= 2 * 3


@pytest.fixture
def one_connection_gateway(seeded: Fake, broker: str) -> Iterator[Gateway]:
    gateway = start_gateway(
        {
            "DATABASE_URL": shared_database_url() + "?application_name=pool-one",
            "DB_POOL_MIN_SIZE": "1",
            "DB_POOL_MAX_SIZE": "1",
            "DB_POOL_TIMEOUT": "2",
            "CELERY_BROKER_URL": broker,
        }
    )
    try:
        yield gateway
    finally:
        _stop(gateway.proc)


def test_a_request_that_waits_longer_than_the_pool_timeout_is_a_503_and_the_pool_serves_on(
    one_connection_gateway: Gateway,
) -> None:
    _, raw = apikey_create(name="one")
    url = one_connection_gateway.url + "/api/v1/generate/async"
    assert call("POST", url, {"prompt": "warm"}, key=raw).status == 202  # the key table is loaded meanwhile
    with psycopg.connect(shared_database_url()) as locker:
        # The process's only connection blocks in the job's INSERT, behind this lock, until it is released.
        locker.execute("LOCK TABLE jobs_job IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(max_workers=1) as pool:
            blocked = pool.submit(call, "POST", url, {"prompt": "blocked"}, key=raw)
            assert wait_until(lambda: _waiting_on_a_lock("pool-one"), timeout=15)

            started = time.monotonic()
            waited = call("POST", url, {"prompt": "waits"}, key=raw)
            assert time.monotonic() - started >= 2  # it queued for the whole DB_POOL_TIMEOUT
            locker.rollback()
            assert blocked.result().status == 202

    assert waited.status == 503, waited.text
    assert waited.json() == {
        "error": {
            "message": "The database is unavailable; try again shortly.",
            "type": "service_unavailable",
            "code": "database_unavailable",
            "param": None,
        }
    }
    assert waited.headers["retry-after"] == "5"
    assert call("POST", url, {"prompt": "after"}, key=raw).status == 202
    assert sorted(Job.objects.values_list("request__prompt", flat=True)) == ["after", "blocked", "warm"]
    assert _connections("pool-one") == 1


def _waiting_on_a_lock(application_name: str) -> bool:
    with psycopg.connect(shared_database_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s "
            "AND wait_event_type = 'Lock'",
            [application_name],
        ).fetchone()
    return row is not None and int(row[0]) == 1


def test_a_worker_holds_at_most_its_processes_pools_while_it_runs_jobs(
    seeded: Fake, broker: str, tmp_path: Path
) -> None:
    _, raw = apikey_create(name="worker burst")
    seeded.configure(**{"demo-fast": {"tps": 200, "tokens": 20}})
    worker = start_worker(
        name="pool",
        log=tmp_path / "worker.log",
        broker_url=broker,
        concurrency=2,
        loglevel="WARNING",
        # libpq names the worker's connections (the URL has no application_name).
        env={"PGAPPNAME": "pool-worker", "DB_POOL_MAX_SIZE": "2", "DB_THREADS": "2"},
    )
    gateway = start_gateway({"CELERY_BROKER_URL": broker})
    try:
        with Peak("pool-worker") as peak:
            jobs = [
                call("POST", gateway.url + "/api/v1/generate/async", {"prompt": f"job {n}"}, key=raw).json()["job_id"]
                for n in range(12)
            ]
            finished = wait_until(
                lambda: Job.objects.filter(pk__in=jobs, status="succeeded").count() == 12, timeout=120
            )
    finally:
        _stop(gateway.proc)
        stop_group(worker)

    assert finished, list(Job.objects.filter(pk__in=jobs).values_list("status", flat=True))
    # Two pool processes and the main one, two connections each at most.
    assert 1 <= peak.value <= (2 + 1) * 2
