"""The life of a job around its runs: the outbox that sends it to the broker, the lease of the worker that runs
it, and the sweeper that ends or sends again every job left behind.

A job is durable once its row is written: the broker only carries a message saying "run job X", and losing
one costs a delay, never the job. So:

- **Outbox.** Submission writes the row with ``dispatched_at`` set, then hands the message to the broker. If
  the broker refuses, ``dispatched_at`` goes back to null and the sweeper sends the job once the broker is
  back. A queued job whose message was sent ``JOB_REDISPATCH_SECONDS`` ago and that no worker started (the
  broker lost it, or the submitting process died between the write and the send) is sent again.
- **Lease.** A worker claims a job by setting it running with ``lease_expires_at`` ``JOB_LEASE_SECONDS`` ahead,
  and renews it every third of that while it works (one UPDATE per renewal). ``deliveries`` numbers the
  claims and fences every later write: a worker that lost its lease can no longer store an outcome.
- **Sweeper.** Beat sends ``jobs.sweep`` every ``JOB_SWEEP_SECONDS``. It queues again and re-sends each running
  job whose lease ran out (its worker died: the stream is told ``reset`` by the next delivery), fails one whose
  workers were lost ``JOB_MAX_DELIVERIES`` times, sends what the outbox holds, and fails every job still
  unfinished ``JOB_DEADLINE_SECONDS`` after it was accepted. So every job ends: ``complete`` or ``error``.

Messages can be duplicated (a re-sent job, Celery's own redelivery after its visibility timeout): a
delivery that finds its job finished, or running under another worker's live lease, does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis.exceptions
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from spignosapi.logs import JOB_ID_HEADER

from .models import Job

# A job's primary key, or its text as a task receives it: the ORM takes either.
JobId = uuid.UUID | str

logger = logging.getLogger(__name__)

# What an unreachable database, broker or Redis raises: worth trying again later, never the job's fault.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    BrokerError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)
BROKER_ERRORS: tuple[type[BaseException], ...] = (BrokerError, redis.exceptions.RedisError, OSError)

# One immediate second try (on a fresh connection: a pooled one may be stale after a broker restart), then
# the outbox takes over; a submission never waits on a broker that is down.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# How many jobs of each kind one sweep handles; the next sweep takes the rest.
SWEEP_BATCH = 500


def job_dispatch(job: Job) -> bool:
    """Hand the job's message to the broker; False when the broker could not take it."""
    from .tasks import run_generation

    try:
        run_generation.apply_async(
            args=[str(job.id)],
            queue=job.queue,
            task_id=job.task_id,
            # The job id travels in the headers too: every record the worker logs while it runs carries it.
            headers={JOB_ID_HEADER: str(job.id)},
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except BROKER_ERRORS as exc:
        logger.warning("job not sent, the broker is unavailable (%s); the sweeper sends it later", type(exc).__name__)
        return False
    return True


def dispatch_accepted(job: Job) -> None:
    """After the submitting transaction commits: send the job, or leave it in the outbox for the sweeper."""
    if job_dispatch(job):
        return
    # If even this write fails, the row keeps its dispatched_at and is sent after JOB_REDISPATCH_SECONDS.
    with contextlib.suppress(OperationalError, InterfaceError):
        Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(dispatched_at=None)


def lease_seconds() -> float:
    return float(settings.JOB_LEASE_SECONDS)


def lease_renewal_seconds() -> float:
    """Renewed three times per lease: two renewals can fail (a slow database) before the lease runs out."""
    return lease_seconds() / 3


@dataclass(frozen=True)
class Claim:
    job: Job
    delivery: int  # this claim's number: the fence of every later write
    redelivered: bool  # an earlier delivery started the job (and may have streamed part of it)


def job_claim(job_id: str, *, now: datetime | None = None) -> Claim | None:
    """Take the job for this delivery; None when it is finished, gone, or held by another worker's live lease."""
    from django.db import transaction

    now = now or timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished:
            return None
        if job.status == Job.Status.RUNNING and job.lease_expires_at is not None and job.lease_expires_at > now:
            return None  # a duplicate message: the job's worker is alive
        redelivered = job.deliveries > 0
        job.status = Job.Status.RUNNING
        job.deliveries += 1
        job.started_at = job.started_at or now
        job.lease_expires_at = now + timedelta(seconds=lease_seconds())
        job.save(update_fields=["status", "deliveries", "started_at", "lease_expires_at"])
    return Claim(job, job.deliveries, redelivered)


def lease_renew(job_id: JobId, delivery: int, *, now: datetime | None = None) -> bool:
    """Extend the lease; False when this delivery no longer holds the job (cancelled, ended, taken over)."""
    now = now or timezone.now()
    held = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, deliveries=delivery)
    return bool(held.update(lease_expires_at=now + timedelta(seconds=lease_seconds())))


def job_release(job_id: JobId, delivery: int, *, resent: bool, now: datetime | None = None) -> bool:
    """Give the job back to the queue (this delivery will be retried); ``resent``: a message for it is on its
    way, else the sweeper sends one. False when this delivery no longer held it."""
    now = now or timezone.now()
    held = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, deliveries=delivery)
    return bool(held.update(status=Job.Status.QUEUED, lease_expires_at=None, dispatched_at=now if resent else None))


def job_mark_unsent(job_id: JobId) -> None:
    """A message announced by ``job_release(resent=True)`` could not be sent: the sweeper will send it."""
    Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(dispatched_at=None)


def job_end(job_id: JobId, *, fields: dict[str, Any], delivery: int | None = None, now: datetime | None = None) -> bool:
    """Store a job's outcome, unless it ended meanwhile (or, with ``delivery``, another delivery holds it)."""
    jobs = Job.objects.filter(pk=job_id)
    jobs = jobs.filter(status=Job.Status.RUNNING, deliveries=delivery) if delivery is not None else jobs
    jobs = jobs.filter(status__in=(Job.Status.QUEUED, Job.Status.RUNNING))
    return bool(jobs.update(finished_at=now or timezone.now(), lease_expires_at=None, **fields))


def job_fail(job_id: JobId, error: dict[str, Any], *, delivery: int | None = None, now: datetime | None = None) -> bool:
    """Fail the job and end its stream with the error; False when it had ended already."""
    if not job_end(job_id, fields={"status": Job.Status.FAILED, "error": error}, delivery=delivery, now=now):
        return False
    session_id = Job.objects.filter(pk=job_id).values_list("session_id", flat=True).first()
    if session_id is not None:
        stream_end(session_id, {"type": "error", "error": error})
    return True


def job_ending(job_id: JobId) -> tuple[str, dict[str, Any]] | None:
    """A finished job's session and the last message its stream must end with; None while it runs or queues."""
    job = Job.objects.filter(pk=job_id).only("session_id", "status", "meta", "error").first()
    if job is None or not job.is_finished:
        return None
    if job.status == Job.Status.SUCCEEDED:
        return job.session_id, {"type": "complete", "meta": job.meta}
    return job.session_id, {"type": "error", "error": job.error}


def stream_ending(job_id: JobId) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    """What a reader of the job's stream asks after waiting ``POLL_S`` for nothing (``streams.subscribe``): the
    message the stream must end with once the job has ended, else None. One query per ask, off the event loop;
    with the database down it says None, and the reader asks again at its next poll."""
    from asgiref.sync import sync_to_async

    read = sync_to_async(job_ending, thread_sensitive=False)

    async def ending() -> dict[str, Any] | None:
        try:
            ended = await read(job_id)
        except INFRASTRUCTURE_ERRORS as exc:
            logger.warning("could not read whether a streamed job ended (%s)", type(exc).__name__)
            return None
        return ended[1] if ended is not None else None

    return ending


def stream_end(session_id: str, message: dict[str, Any], *, patient: bool = True) -> None:
    """Publish a job's last message from synchronous code: the sweeper or a task's last word (``patient``: riding
    out a Redis restart), or a request (not patient: one more try, the client is waiting)."""
    from asgiref.sync import async_to_sync

    from .streams import REDIS_RETRY_ATTEMPTS, publish_once

    try:
        async_to_sync(publish_once)(session_id, message, attempts=REDIS_RETRY_ATTEMPTS if patient else 1)
    except INFRASTRUCTURE_ERRORS as exc:
        # The row says how the job ended; a reader that missed the message still ends on the row (streams.py).
        logger.warning("could not end the stream of a job (%s)", type(exc).__name__)


def error_body(message: str, *, code: str, error_type: str = "server_error") -> dict[str, Any]:
    return {"message": message, "type": error_type, "code": code, "param": None}


WORKER_LOST = "worker_lost"
JOB_EXPIRED = "job_expired"


@dataclass
class SweepReport:
    sent: int = 0  # from the outbox, or sent again after their message was lost
    redelivered: int = 0  # running jobs whose lease ran out, queued and sent again
    failed: int = 0  # ended with an error: past their deadline, or their workers lost too often

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "redelivered": self.redelivered, "failed": self.failed}


def jobs_sweep(*, now: datetime | None = None, send: Callable[[Job], bool] = job_dispatch) -> SweepReport:
    """End or send again every job left behind (see the module docstring). ``now`` and ``send`` are injected
    by tests; each update is fenced on what was read, so two sweeps at once do each thing once."""
    now = now or timezone.now()
    report = SweepReport()
    unfinished = (Job.Status.QUEUED, Job.Status.RUNNING)

    deadline = now - timedelta(seconds=settings.JOB_DEADLINE_SECONDS)
    for job_id in Job.objects.filter(status__in=unfinished, created_at__lt=deadline).values_list("pk", flat=True)[
        :SWEEP_BATCH
    ]:
        message = f"The job did not finish within {settings.JOB_DEADLINE_SECONDS} s of being accepted."
        report.failed += job_fail(job_id, error_body(message, code=JOB_EXPIRED), now=now)

    expired_leases = Job.objects.filter(status=Job.Status.RUNNING).filter(
        # A running row without a lease was started before leases existed: its start stands for it.
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, started_at__lt=now - _lease())
    )
    for job in expired_leases.order_by("created_at")[:SWEEP_BATCH]:
        if job.deliveries >= settings.JOB_MAX_DELIVERIES:
            message = f"The job's worker stopped {job.deliveries} times before finishing it."
            report.failed += job_fail(job.pk, error_body(message, code=WORKER_LOST), delivery=job.deliveries, now=now)
            continue
        requeued = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, deliveries=job.deliveries).update(
            status=Job.Status.QUEUED, lease_expires_at=None, dispatched_at=None
        )
        if requeued:
            logger.warning("job's worker lost (lease expired); sending it again")
            report.redelivered += 1  # sent below, with the rest of the outbox

    waiting = Job.objects.filter(status=Job.Status.QUEUED).filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS))
    )
    for job in waiting.order_by("created_at")[:SWEEP_BATCH]:
        taken = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED, dispatched_at=job.dispatched_at)
        if not taken.update(dispatched_at=now):
            continue  # started, ended or sent by someone else meanwhile
        if not send(job):
            job_mark_unsent(job.pk)
            break  # the broker is down: the next sweep tries again
        report.sent += 1
    return report


def _lease() -> timedelta:
    return timedelta(seconds=lease_seconds())
