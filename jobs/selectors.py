"""Reads for jobs: who may see a job, and the queue statistics."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from .models import Job


def may_read(job: Job, *, key_id: int | None, user_id: int | None, is_staff: bool) -> bool:
    """Only the key that created the job, the dashboard user who did, or staff."""
    if is_staff:
        return True
    if key_id is not None and job.api_key_id == key_id:
        return True
    return user_id is not None and job.owner_id == user_id


def job_for(job_filter: dict[str, Any], *, key_id: int | None, user_id: int | None, is_staff: bool) -> Job | None:
    """The job, or None when it does not exist or the caller may not read it (both answer 404)."""
    job = Job.objects.filter(**job_filter).first()
    if job is None or not may_read(job, key_id=key_id, user_id=user_id, is_staff=is_staff):
        return None
    return job


def jobs_by_status() -> dict[str, int]:
    counts = dict.fromkeys(Job.Status.values, 0)
    for row in Job.objects.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts
