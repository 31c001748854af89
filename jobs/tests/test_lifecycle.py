"""The outbox, the lease and the sweeper (jobs/lifecycle.py) on the real database, with the clock injected.

The sweeper's ``send`` is injected too (a recorder that stands for the broker); the fault tests
(tests/test_job_outages.py) run the real thing with real processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from jobs.lifecycle import job_claim, job_end, job_release, jobs_sweep, lease_renew
from jobs.models import Job
from jobs.services import job_run
from jobs.streams import buffer_key, publish_once
from spignosapi import loops

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def lifecycle_settings(settings: Any) -> None:
    settings.JOB_LEASE_SECONDS = 30
    settings.JOB_REDISPATCH_SECONDS = 600
    settings.JOB_MAX_DELIVERIES = 3
    settings.JOB_DEADLINE_SECONDS = 3600


class Broker:
    """Stands for the broker: records what the sweeper sends, or refuses it."""

    def __init__(self, *, up: bool = True) -> None:
        self.up = up
        self.sent: list[str] = []

    def __call__(self, job: Job) -> bool:
        if self.up:
            self.sent.append(str(job.pk))
        return self.up


def make_job(*, created: datetime = T0, **fields: Any) -> Job:
    job = Job.objects.create(request={"prompt": "hi"}, **{"dispatched_at": created, **fields})
    Job.objects.filter(pk=job.pk).update(created_at=created)  # auto_now_add: set after the insert
    job.refresh_from_db()
    return job


def stream_of(job: Job) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(django_settings.REDIS_CACHE_URL)
    try:
        entries: Any = client.xrange(buffer_key(job.session_id))  # message n is entry "n-0", its JSON in field m
        return [json.loads(fields[b"m"]) for _, fields in entries]
    finally:
        client.close()


# --- the claim and its lease ------------------------------------------------------------------------------


def test_a_claim_takes_a_queued_job_with_a_lease() -> None:
    job = make_job()
    claim = job_claim(str(job.pk), now=T0)
    assert claim is not None
    assert (claim.delivery, claim.redelivered) == (1, False)
    job.refresh_from_db()
    assert (job.status, job.deliveries, job.started_at) == ("running", 1, T0)
    assert job.lease_expires_at == T0 + timedelta(seconds=30)


def test_a_duplicate_message_leaves_a_job_whose_worker_holds_a_live_lease() -> None:
    job = make_job(status="running", deliveries=1, lease_expires_at=T0 + timedelta(seconds=1))
    assert job_claim(str(job.pk), now=T0) is None
    job.refresh_from_db()
    assert (job.status, job.deliveries) == ("running", 1)


def test_a_job_whose_lease_ran_out_is_claimed_again_as_a_redelivery() -> None:
    job = make_job(status="running", deliveries=1, lease_expires_at=T0 - timedelta(seconds=1))
    claim = job_claim(str(job.pk), now=T0)
    assert claim is not None and (claim.delivery, claim.redelivered) == (2, True)


def test_a_finished_job_is_not_claimed() -> None:
    job = make_job(status="succeeded")
    assert job_claim(str(job.pk), now=T0) is None


def test_only_the_delivery_holding_the_job_renews_its_lease_and_stores_its_outcome() -> None:
    job = make_job(status="running", deliveries=2, lease_expires_at=T0)
    assert lease_renew(job.pk, 1, now=T0) is False
    assert job_end(job.pk, fields={"status": "succeeded"}, delivery=1) is False
    assert lease_renew(job.pk, 2, now=T0 + timedelta(seconds=10)) is True
    job.refresh_from_db()
    assert job.lease_expires_at == T0 + timedelta(seconds=40)
    assert job_end(job.pk, fields={"status": "succeeded"}, delivery=2, now=T0) is True
    job.refresh_from_db()
    assert (job.status, job.finished_at, job.lease_expires_at) == ("succeeded", T0, None)


def test_a_cancelled_job_cannot_be_renewed_released_or_ended_by_its_worker() -> None:
    job = make_job(status="cancelled", deliveries=1)
    assert lease_renew(job.pk, 1, now=T0) is False
    assert job_release(job.pk, 1, resent=True, now=T0) is False
    assert job_end(job.pk, fields={"status": "succeeded"}, delivery=1) is False
    assert Job.objects.get(pk=job.pk).status == "cancelled"


def test_a_released_job_is_queued_again_in_or_out_of_the_outbox() -> None:
    job = make_job(status="running", deliveries=1, lease_expires_at=T0)
    assert job_release(job.pk, 1, resent=True, now=T0) is True
    job.refresh_from_db()
    assert (job.status, job.lease_expires_at, job.dispatched_at) == ("queued", None, T0)
    Job.objects.filter(pk=job.pk).update(status="running", deliveries=2)
    assert job_release(job.pk, 2, resent=False, now=T0) is True
    assert Job.objects.get(pk=job.pk).dispatched_at is None


# --- the sweeper ------------------------------------------------------------------------------------------


def test_the_sweeper_sends_what_the_outbox_holds() -> None:
    unsent = make_job(dispatched_at=None)
    sent_recently = make_job(dispatched_at=T0 - timedelta(seconds=599))
    broker = Broker()
    report = jobs_sweep(now=T0, send=broker)
    assert report.as_dict() == {"sent": 1, "redelivered": 0, "failed": 0}
    assert broker.sent == [str(unsent.pk)]
    assert Job.objects.get(pk=unsent.pk).dispatched_at == T0
    assert Job.objects.get(pk=sent_recently.pk).dispatched_at == T0 - timedelta(seconds=599)


def test_the_sweeper_sends_again_a_queued_job_no_worker_started_after_its_message_was_sent() -> None:
    lost = make_job(dispatched_at=T0 - timedelta(seconds=601))
    broker = Broker()
    assert jobs_sweep(now=T0, send=broker).sent == 1
    assert broker.sent == [str(lost.pk)]
    assert jobs_sweep(now=T0 + timedelta(seconds=1), send=broker).sent == 0  # not again before its time


def test_a_broker_still_down_leaves_the_jobs_in_the_outbox_for_the_next_sweep() -> None:
    first = make_job(dispatched_at=None)
    second = make_job(dispatched_at=None, created=T0 + timedelta(seconds=1))
    assert jobs_sweep(now=T0 + timedelta(seconds=2), send=Broker(up=False)).sent == 0
    assert list(Job.objects.filter(pk__in=[first.pk, second.pk]).values_list("dispatched_at", flat=True)) == [
        None,
        None,
    ]
    broker = Broker()
    assert jobs_sweep(now=T0 + timedelta(seconds=3), send=broker).sent == 2
    assert broker.sent == [str(first.pk), str(second.pk)]


def test_the_sweeper_sends_again_a_running_job_whose_lease_ran_out() -> None:
    dead = make_job(status="running", deliveries=1, lease_expires_at=T0 - timedelta(seconds=1))
    alive = make_job(status="running", deliveries=1, lease_expires_at=T0 + timedelta(seconds=1))
    broker = Broker()
    report = jobs_sweep(now=T0, send=broker)
    assert report.as_dict() == {"sent": 1, "redelivered": 1, "failed": 0}
    assert broker.sent == [str(dead.pk)]
    dead.refresh_from_db()
    assert (dead.status, dead.deliveries, dead.lease_expires_at, dead.dispatched_at) == ("queued", 1, None, T0)
    assert Job.objects.get(pk=alive.pk).status == "running"


def test_the_sweeper_fails_a_job_whose_workers_died_too_often_and_ends_its_stream() -> None:
    job = make_job(status="running", deliveries=3, lease_expires_at=T0 - timedelta(seconds=1))
    broker = Broker()
    assert jobs_sweep(now=T0, send=broker).as_dict() == {"sent": 0, "redelivered": 0, "failed": 1}
    assert broker.sent == []
    job.refresh_from_db()
    error = {
        "message": "The job's worker stopped 3 times before finishing it.",
        "type": "server_error",
        "code": "worker_lost",
        "param": None,
    }
    assert (job.status, job.error, job.finished_at, job.lease_expires_at) == ("failed", error, T0, None)
    assert stream_of(job) == [{"type": "error", "error": error}]


def test_the_sweeper_fails_every_job_unfinished_past_its_deadline() -> None:
    queued = make_job(created=T0 - timedelta(seconds=3601))
    running = make_job(
        created=T0 - timedelta(seconds=3601), status="running", deliveries=1, lease_expires_at=T0 + timedelta(1)
    )
    younger = make_job(created=T0 - timedelta(seconds=3599), dispatched_at=T0 - timedelta(seconds=1))
    finished = make_job(created=T0 - timedelta(seconds=7200), status="succeeded")
    broker = Broker()
    assert jobs_sweep(now=T0, send=broker).as_dict() == {"sent": 0, "redelivered": 0, "failed": 2}
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert [statuses[j.pk] for j in (queued, running, younger, finished)] == ["failed", "failed", "queued", "succeeded"]
    expired = Job.objects.get(pk=queued.pk)
    assert expired.error is not None and expired.error["code"] == "job_expired"
    assert expired.error["message"] == "The job did not finish within 3600 s of being accepted."
    assert stream_of(expired) == [{"type": "error", "error": expired.error}]


# --- a finished job's stream always ends ----------------------------------------------------------------------


@pytest.fixture
def event_loop_threads() -> Iterator[None]:
    """job_run runs on this thread's long-lived loop, whose threads hold database connections: closed after."""
    yield
    loops.close_all()


@pytest.mark.django_db(transaction=True)  # job_run reads the row from other threads
def test_a_delivery_of_a_finished_job_ends_the_stream_its_run_left_open(event_loop_threads: None) -> None:
    meta = {"model": "demo/demo-fast", "completion_tokens": 2}
    job = make_job(status="succeeded", deliveries=1, output="a b", meta=meta)
    chunks = [{"type": "chunk", "content": "a "}, {"type": "chunk", "content": "b"}]
    for chunk in chunks:  # the run streamed its tokens, stored its outcome, then Redis refused ``complete``
        loops.run(publish_once(job.session_id, chunk))

    assert loops.run(job_run(str(job.pk), final_attempt=False)) == "skipped"
    assert stream_of(job) == [*chunks, {"type": "complete", "meta": meta}]
    assert loops.run(job_run(str(job.pk), final_attempt=False)) == "skipped"  # a second time adds nothing
    assert stream_of(job) == [*chunks, {"type": "complete", "meta": meta}]
