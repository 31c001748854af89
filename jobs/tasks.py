"""The Celery task of async jobs: thin, idempotent, retried only for retryable pre-token failures."""

from __future__ import annotations

import contextlib

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError

from spignosapi import loops
from spignosapi.tasks import retry_countdown

from .services import RetryableFailure, job_run, mark_failed

MAX_RETRIES = 3


@shared_task(
    bind=True,
    name="jobs.run_generation",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    ignore_result=True,
)
def run_generation(self: Task, job_id: str) -> str:
    try:
        return loops.run(job_run(job_id, final_attempt=self.request.retries >= MAX_RETRIES))
    except RetryableFailure as failure:
        raise self.retry(countdown=retry_countdown(self.request.retries), exc=failure) from None
    except SoftTimeLimitExceeded:
        mark_failed(
            job_id,
            {
                "message": "The job ran past its time limit.",
                "type": "timeout_error",
                "code": "job_time_limit",
                "param": None,
            },
        )
        return "failed"
    except (OperationalError, InterfaceError) as exc:  # e.g. the database refused the connection: tried again
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=retry_countdown(self.request.retries), exc=exc) from None
        _fail_quietly(job_id, "The job could not be run: the database was unavailable.", "database_unavailable")
        raise
    except Exception:
        _fail_quietly(job_id, "The job failed on an internal error.", "internal_error")
        raise


def _fail_quietly(job_id: str, message: str, code: str) -> None:
    """The job must not stay queued or running (its readers would wait for ever); if even this fails, the
    task's own error is the one logged."""
    with contextlib.suppress(Exception):
        mark_failed(job_id, {"message": message, "type": "server_error", "code": code, "param": None})
