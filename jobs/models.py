"""Async generation jobs: one row per ``POST /api/v1/generate/async``."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models


def new_session_id() -> str:
    """Unguessable: whoever holds it still needs the owning key (or staff) to read the stream."""
    return secrets.token_urlsafe(24)


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session_id = models.CharField(max_length=64, unique=True, default=new_session_id, editable=False)
    task_id = models.CharField(max_length=64, blank=True)
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    priority = models.SmallIntegerField(default=0)
    queue = models.CharField(max_length=12, default="default")
    request = models.JSONField(help_text="The validated generation request.")
    output = models.TextField(blank=True)
    meta = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    deliveries = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker started it.")
    # The outbox: when a message for the job was last handed to the broker; null while one is still to be
    # sent (the broker was down when it was accepted). The sweeper sends those, and again any queued job
    # whose message seems lost (jobs/lifecycle.py).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Until when the worker running the job holds it; it renews the lease while it works. Past it, the
    # worker is presumed dead and the sweeper sends the job again.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
