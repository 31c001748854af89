"""The Celery task of async jobs: thin, idempotent, retried only for retryable pre-token failures."""

from __future__ import annotations

import asyncio

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

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
        return asyncio.run(job_run(job_id, final_attempt=self.request.retries >= MAX_RETRIES))
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
