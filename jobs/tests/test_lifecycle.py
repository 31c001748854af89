"""The outbox, the lease and the sweeper (jobs/lifecycle.py) on the real database, with the clock injected.

The sweeper's ``send`` is injected too (a recorder that stands for the broker); the fault tests
(tests/test_job_outages.py) run the real thing with real processes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from pytest_django import Settings

from jobs.lifecycle import job_claim, job_end, job_release, jobs_sweep, lease_renew, stream_ending
from jobs.models import Job
from jobs.services import job_run, mark_failed
from jobs.streams import Publisher, buffer_key, publish_once, subscribe
from spignosapi import loops
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def lifecycle_settings(settings: Settings) -> None:
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
    job = Job.objects.create(**{"request": {"prompt": "hi"}, "dispatched_at": created, **fields})
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
    job = Job.objects.get(pk=job.pk)  # read again: mypy keeps the lease_expires_at narrowed above a refresh
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


@pytest.mark.django_db(transaction=True)  # the reader asks the row from another thread
def test_a_reader_of_a_job_cancelled_while_redis_was_down_ends_on_the_row(event_loop_threads: None) -> None:
    # job_cancel stored the cancel, but its one try at the stream's last message met Redis down.
    job = make_job(status="running", deliveries=1, lease_expires_at=T0)
    loops.run(publish_once(job.session_id, {"type": "chunk", "content": "a"}))
    error = {"message": "The job was cancelled.", "type": "cancelled", "code": "cancelled", "param": None}
    Job.objects.filter(pk=job.pk).update(status="cancelled", error=error, finished_at=T0)

    async def read() -> list[dict[str, Any] | None]:
        ending = stream_ending(job.pk)
        return [message async for message in subscribe(job.session_id, poll_s=0.01, ending=ending)]

    ended = [{"type": "chunk", "content": "a"}, {"type": "error", "error": error}]
    assert loops.run(read()) == ended
    assert stream_of(job) == ended


@pytest.mark.django_db(transaction=True)
def test_a_reader_of_a_running_job_gets_keep_alives_and_the_stream_is_left_as_it_is(
    event_loop_threads: None,
) -> None:
    job = make_job(status="running", deliveries=1, lease_expires_at=T0)

    async def read() -> list[dict[str, Any] | None]:
        received: list[dict[str, Any] | None] = []
        async for message in subscribe(job.session_id, poll_s=0.01, ending=stream_ending(job.pk)):
            received.append(message)
            if len(received) == 3:
                break
        return received

    assert loops.run(read()) == [None, None, None]
    assert stream_of(job) == []


# --- a delivery that lost its lease writes nothing more -------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # job_run reads and writes the row from other threads
def test_a_delivery_taken_over_stops_at_its_next_chunk_and_stores_nothing(
    event_loop_threads: None, seeded: Any
) -> None:
    # The lease (30 s, renewed every 10 s) is not what stops it: its next append after the new delivery's
    # ``reset`` is refused, within one token.
    seeded.configure(**{"demo-fast": {"tps": 10, "tokens": 40}})  # four seconds of tokens
    job = make_job(request={"prompt": "tell me", "model": "demo/demo-fast", "max_tokens": 40})
    outcome: list[str] = []
    run = threading.Thread(target=lambda: outcome.append(loops.run(job_run(str(job.pk), final_attempt=True))))
    run.start()
    try:
        assert wait_until(lambda: len(stream_of(job)) >= 2)  # delivery 1 is streaming
        # The sweeper requeued it (its lease looked expired) and delivery 2 claimed it and told the stream.
        assert Job.objects.filter(pk=job.pk, deliveries=1).update(deliveries=2) == 1
        published = loops.run(_publish_as(job.session_id, 2, {"type": "reset"}))
    finally:
        run.join(timeout=30)
    assert outcome == ["lost"]
    messages = stream_of(job)
    assert messages[published - 1 :] == [{"type": "reset"}]  # nothing of delivery 1 after the reset
    assert all(m == {"type": "reset"} or m["type"] == "chunk" for m in messages)
    job.refresh_from_db()
    assert (job.status, job.deliveries, job.output, job.finished_at) == ("running", 2, "", None)


async def _publish_as(session_id: str, delivery: int, message: dict[str, Any]) -> int:
    publisher = Publisher(session_id, delivery=delivery)
    try:
        return await publisher.publish(message)
    finally:
        await publisher.close()


def test_the_last_word_of_a_task_is_fenced_by_its_delivery() -> None:
    # A delivery that lost its lease then hit its time limit must not fail the job delivery 2 runs fine.
    job = make_job(status="running", deliveries=2, lease_expires_at=T0 + timedelta(seconds=30))
    error = {"message": "The job ran past its time limit.", "type": "timeout_error", "code": "x", "param": None}
    mark_failed(str(job.pk), error, delivery=1)
    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == ("running", None, None)
    assert stream_of(job) == []
    mark_failed(str(job.pk), error, delivery=2)
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", error)
    assert stream_of(job) == [{"type": "error", "error": error}]
