"""The Celery tasks of async jobs: thin and idempotent; a failure worth retrying is retried with backoff."""

from __future__ import annotations

import contextlib
import logging
import random

from celery import Task, shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from django.conf import settings

from spignosapi import loops
from spignosapi.tasks import retry_countdown

from . import lifecycle
from .services import Delivery, InfrastructureFailure, RetryableFailure, job_run, mark_failed

logger = logging.getLogger(__name__)

# Upstream failures before the first token (every model errored): tried again this many times.
MAX_RETRIES = 3


def infrastructure_countdown(retries: int) -> float:
    """Seconds before the next try after the database, broker or Redis failed: 2 s doubling to 60 s (± 25 %),
    so nine tries span about five minutes, long enough for a restart or a failover."""
    return float(min(60, 2 ** (retries + 1)) * random.uniform(0.75, 1.25))


@shared_task(
    bind=True,
    name="jobs.run_generation",
    acks_late=True,
    reject_on_worker_lost=True,
    # Retries are counted per kind below; Celery's own cap must not cut the longer series short.
    max_retries=None,
    ignore_result=True,
)
def run_generation(self: Task, job_id: str) -> str:
    retries = self.request.retries
    delivery = Delivery()
    try:
        return loops.run(job_run(job_id, final_attempt=retries >= MAX_RETRIES, delivery=delivery))
    except RetryableFailure as failure:
        return _retry_later(self, job_id, failure.delivery, retry_countdown(retries), failure)
    except InfrastructureFailure as failure:
        if retries < settings.JOB_INFRA_RETRIES:
            return _retry_later(self, job_id, failure.delivery, infrastructure_countdown(retries), failure)
        cause = type(failure.__cause__).__name__
        message = f"The job could not be run: a dependency stayed unavailable ({cause})."
        _fail_quietly(job_id, message, "dependency_unavailable", delivery=failure.delivery)
        return "failed"
    except SoftTimeLimitExceeded:
        error = lifecycle.error_body(
            "The job ran past its time limit.", code="job_time_limit", error_type="timeout_error"
        )
        mark_failed(job_id, error, delivery=delivery.number)
        return "failed"
    except Exception:
        _fail_quietly(job_id, "The job failed on an internal error.", "internal_error", delivery=delivery.number)
        raise


def _retry_later(self: Task, job_id: str, delivery: int | None, countdown: float, cause: Exception) -> str:
    """Give the job back and send it again in ``countdown`` seconds.

    Whatever is down, the job is not lost: if the database cannot take the release, the job keeps its lease
    and the sweeper sends it again once the lease has run out; if the broker cannot take the retry, the job
    stays in the outbox and the sweeper sends it once the broker is back.
    """
    if delivery is not None:
        try:
            # False: the job was cancelled, ended or taken over meanwhile. The retry is sent all the same: if
            # the run stored its outcome but Redis refused the stream's last message, the next delivery ends
            # the stream (services._ensure_stream_ended); otherwise it finds nothing to do.
            lifecycle.job_release(job_id, delivery, resent=True)
        except lifecycle.INFRASTRUCTURE_ERRORS:
            logger.warning("job not released (the database is unavailable); the sweeper sends it again")
            return "released_later"
    try:
        raise self.retry(countdown=countdown, exc=cause)  # Retry: the worker logs and counts it as a retry
    except Reject:
        # Celery could not send the retry (it rejects the task when the broker refuses the message): the job
        # goes back to the outbox, and the sweeper sends it once the broker is back.
        logger.warning("job retry not sent (the broker is unavailable); the sweeper sends it")
        with contextlib.suppress(*lifecycle.INFRASTRUCTURE_ERRORS):
            lifecycle.job_mark_unsent(job_id)
        return "retry_unsent"


def _fail_quietly(job_id: str, message: str, code: str, *, delivery: int | None) -> None:
    """The job must not stay queued or running (its readers would wait for ever); if even this fails, the
    sweeper ends it (its lease runs out, or its deadline passes)."""
    with contextlib.suppress(Exception):
        mark_failed(job_id, lifecycle.error_body(message, code=code), delivery=delivery)


@shared_task(name="jobs.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Sent by beat every ``JOB_SWEEP_SECONDS``: ends or sends again the jobs left behind (jobs/lifecycle.py).
    With the database down there is nothing to sweep: the next sweep, after it is back, does the work."""
    try:
        return lifecycle.jobs_sweep().as_dict()
    except lifecycle.INFRASTRUCTURE_ERRORS as exc:
        logger.warning("jobs not swept: a dependency is unavailable (%s)", type(exc).__name__)
        return {}
