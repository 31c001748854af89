"""Submitting, running and cancelling async generation jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.selectors import KeyInfo, key_info_by_id
from llm import LLMError
from routing import gateway, limits, quota
from routing.errors import GatewayError
from spignosapi.api.errors import error_parts

from . import lifecycle
from .models import Job
from .streams import Publisher, StaleDelivery

logger = logging.getLogger(__name__)


def queue_for(priority: int) -> str:
    """Contract: priority >= 5 → high, <= -5 → low, else default."""
    if priority >= 5:
        return "high"
    if priority <= -5:
        return "low"
    return "default"


def job_submit(*, key: KeyInfo | None, owner_id: int | None, request: dict[str, Any], priority: int) -> Job:
    """Write the job (one INSERT: from then on it is durable), then send it once the row is committed (a worker
    must find it). A broker that cannot take it leaves it in the outbox for the sweeper (jobs/lifecycle.py):
    the submission is accepted all the same."""
    job = Job(
        api_key_id=key.id if key else None,
        owner_id=owner_id,
        priority=priority,
        queue=queue_for(priority),
        request=request,
        dispatched_at=timezone.now(),
    )
    job.task_id = str(job.id)  # the id is made here (uuid4), so the row is written once
    job.save(force_insert=True)
    transaction.on_commit(lambda: lifecycle.dispatch_accepted(job))
    return job


def cancel_flag(job_id: Any) -> str:
    return f"job:{job_id}:cancelled"


def job_cancel(*, job: Job) -> Job:
    """Mark the job cancelled; a running worker stops at its next token (or at its next lease renewal when
    Redis or the broker cannot tell it) and the stream ends with an error. The row is what counts: the
    signals after it are best effort."""
    from celery import current_app as app  # the project's app, not imported: it sits above the apps

    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_finished:
            return locked
        # Queued, no run holds it (a claim takes this lock): nothing will book the call, so the reservation
        # made at submission (tokens, budgets) is released here. A running job's run books it as cancelled.
        unclaimed = locked.status == Job.Status.QUEUED
        locked.status = Job.Status.CANCELLED
        locked.finished_at = timezone.now()
        locked.lease_expires_at = None
        locked.error = {"message": "The job was cancelled.", "type": "cancelled", "code": "cancelled", "param": None}
        locked.save(update_fields=["status", "finished_at", "lease_expires_at", "error"])
    if unclaimed and locked.request.get("reservation"):
        limits.settle_tokens_sync(quota.Reservation.from_dict(locked.request["reservation"]), 0)
    with contextlib.suppress(Exception):  # Redis down: the worker's lease renewal sees the cancel instead
        cache.set(cancel_flag(job.pk), 1, timeout=3600)
    with contextlib.suppress(*lifecycle.BROKER_ERRORS):  # a queued task is dropped; a running one sees the flag
        app.control.revoke(locked.task_id)
    lifecycle.stream_end(locked.session_id, {"type": "error", "error": locked.error}, patient=False)
    return locked


def _key_info(job: Job) -> KeyInfo | None:
    # As it is now, team and allow-list included: a run walks only the models its key may still use.
    return key_info_by_id(job.api_key_id) if job.api_key_id is not None else None


def _finish(job_id: Any, delivery: int, **fields: Any) -> bool:
    """Store the outcome if this delivery still holds the job (not cancelled, not taken over); True when stored."""
    return lifecycle.job_end(job_id, fields=fields, delivery=delivery)


class RetryableFailure(Exception):
    """Raised to the task so Celery retries it with backoff (no token had been streamed); the job is released."""

    def __init__(self, error: dict[str, Any], delivery: int) -> None:
        super().__init__(error.get("message", "retryable failure"))
        self.error = error
        self.delivery = delivery


class InfrastructureFailure(Exception):
    """The database, broker or Redis failed under the run: raised to the task, which retries with backoff.

    ``delivery`` is the claim the run held (None when it failed before claiming the job)."""

    def __init__(self, delivery: int | None) -> None:
        super().__init__("a dependency of the job's run failed")
        self.delivery = delivery


class LeaseLost(Exception):
    """This delivery no longer holds the job: cancelled, ended by the sweeper, or given to another worker."""


def _call_for(job: Job, key: KeyInfo | None, *, final_attempt: bool) -> gateway.Call:
    """The job's call, admitted at submission (its tokens reservation is in the stored request)."""
    data = job.request
    reservation = quota.Reservation.from_dict(data["reservation"]) if data.get("reservation") else None
    # Short of its last attempt, a retryable failure before any token is tried again: the reservation stays.
    admission = gateway.Admission(reservation, retries_left=not final_attempt)
    return gateway.generation_call(
        data, key=key, request_id=f"job-{job.pk}", endpoint="generate.async", stream=True, admission=admission
    )


@dataclass
class Delivery:
    """The claim a run took, for the task's last word when the run dies under it (a time limit, a crash): that
    word is fenced by it like every other write of the run."""

    number: int | None = None  # None until the job is claimed


async def job_run(job_id: str, *, final_attempt: bool, delivery: Delivery | None = None) -> str:
    """Run one delivery of the job: claim it (its number into ``delivery``), route, stream every token to the
    session, store the outcome.

    Returns the final status ("skipped": finished, gone or held by a live worker; "lost": the lease was lost
    meanwhile). Raises ``RetryableFailure`` for a retryable upstream failure before any token when more
    attempts remain, and ``InfrastructureFailure`` when the database, broker or Redis failed under the run.
    """
    try:
        claim = await sync_to_async(lifecycle.job_claim, thread_sensitive=False)(job_id)
    except lifecycle.INFRASTRUCTURE_ERRORS as exc:
        raise InfrastructureFailure(None) from exc
    if claim is None:
        await _ensure_stream_ended(job_id)
        return "skipped"
    if delivery is not None:
        delivery.number = claim.delivery
    lease = LeaseKeeper(claim)
    try:
        return await _run(claim, lease, final_attempt=final_attempt)
    except StaleDelivery:
        # A later delivery publishes to the stream: this one lost its lease before its renewal could tell it.
        logger.warning("job run stopped: a later delivery has taken the job's stream over")
        return "lost"
    except asyncio.CancelledError:
        if not lease.lost:
            raise
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        logger.warning("job run stopped: this delivery no longer holds the job")
        return "lost"
    except lifecycle.INFRASTRUCTURE_ERRORS as exc:
        logger.warning("job run interrupted: %s", type(exc).__name__)
        raise InfrastructureFailure(claim.delivery) from exc
    finally:
        await lease.stop()


async def _ensure_stream_ended(job_id: str) -> None:
    """A delivery of a finished job (a duplicate, or the retry of a run whose last message Redis refused)
    makes sure the stream ends: readers wait for ``complete`` or ``error``, whatever failed after the outcome
    was stored. One read of the row and one of the buffer."""
    try:
        ending = await sync_to_async(lifecycle.job_ending, thread_sensitive=False)(job_id)
        if ending is None:
            return
        session_id, message = ending
        publisher = Publisher(session_id)
        try:
            await publisher.end(message)  # appended only if the stream does not end already
        finally:
            await publisher.close()
    except lifecycle.INFRASTRUCTURE_ERRORS as exc:
        raise InfrastructureFailure(None) from exc


class LeaseKeeper:
    """Renews the claim's lease while the run works (one UPDATE per renewal interval); if the claim is lost
    (cancelled, ended by the sweeper, given to another worker) it cancels the run."""

    def __init__(self, claim: lifecycle.Claim) -> None:
        self.claim = claim
        self.lost = False
        self._run = asyncio.current_task()
        self._task: asyncio.Task[None] | None = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        renew = sync_to_async(lifecycle.lease_renew, thread_sensitive=False)
        while True:
            await asyncio.sleep(lifecycle.lease_renewal_seconds())
            try:
                held = await renew(self.claim.job.pk, self.claim.delivery)
            except lifecycle.INFRASTRUCTURE_ERRORS as exc:  # two more tries before the lease runs out
                logger.warning("job lease not renewed (%s); trying again", type(exc).__name__)
                continue
            if not held:
                self.lost = True
                if self._run is not None:
                    self._run.cancel()
                return

    async def stop(self) -> None:
        """Before the run stores its outcome (which ends the lease) and when it returns."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _cancelled(flag: str) -> bool:
    """The cancel flag (read per token); Redis failing must not fail the run: the lease sees a cancel too."""
    try:
        return bool(await sync_to_async(cache.get, thread_sensitive=False)(flag))
    except Exception:
        return False


async def _run(claim: lifecycle.Claim, lease: LeaseKeeper, *, final_attempt: bool) -> str:
    job = claim.job
    key = await sync_to_async(_key_info, thread_sensitive=False)(job)
    publisher = Publisher(job.session_id, delivery=claim.delivery)
    try:
        # Clients drop what an earlier delivery streamed; a delivery that failed before any token sent nothing.
        if claim.redelivered and await publisher.published():
            await publisher.publish({"type": "reset"})
        stream = gateway.streaming(_call_for(job, key, final_attempt=final_attempt))
        try:
            async with stream:
                if not await _relay(stream, publisher, cancel_flag(job.pk)):
                    return "cancelled"
        except (GatewayError, LLMError) as exc:
            # e.g. every model failed, the stream broke off, a category or model deleted since the submission
            if exc.retryable and not stream.sent and not final_attempt:
                raise RetryableFailure(_error_of(exc), claim.delivery) from None
            return await _store_failure(claim, lease, publisher, stream, _error_of(exc))
        return await _store_success(claim, lease, publisher, stream)
    finally:
        await publisher.close()


async def _relay(stream: gateway.Stream, publisher: Publisher, flag: str) -> bool:
    """Publish the stream's tokens to the job's session; False when the job was cancelled meanwhile."""
    async for event in stream:
        if event.type == "delta" and event.content:
            if await _cancelled(flag):
                stream.cancel("cancelled")  # booked with the tokens produced until now: they are the key's
                return False
            await publisher.publish({"type": "chunk", "content": event.content})
    return True


async def _store_success(
    claim: lifecycle.Claim, lease: LeaseKeeper, publisher: Publisher, stream: gateway.Stream
) -> str:
    output = stream.result.text if stream.result is not None else stream.text
    await lease.stop()
    stored = await sync_to_async(_finish, thread_sensitive=False)(
        claim.job.pk, claim.delivery, status=Job.Status.SUCCEEDED, output=output, meta=stream.meta, error=None
    )
    if not stored:
        return "cancelled"
    await publisher.publish({"type": "complete", "meta": stream.meta})
    return "succeeded"


async def _store_failure(
    claim: lifecycle.Claim, lease: LeaseKeeper, publisher: Publisher, stream: gateway.Stream, error: dict[str, Any]
) -> str:
    """The job failed: with the text streamed before the failure, and the meta of the call if it was made."""
    await lease.stop()
    stored = await sync_to_async(_finish, thread_sensitive=False)(
        claim.job.pk, claim.delivery, status=Job.Status.FAILED, error=error, output=stream.text, meta=stream.meta
    )
    if stored:
        logger.warning("job failed: %s", error.get("code"))  # the record carries the job's ids
        await publisher.publish({"type": "error", "error": error})
    return "failed"


def _error_of(exc: GatewayError | LLMError) -> dict[str, Any]:
    """The error body a failed job stores and streams: the envelope's, as the HTTP doors send it."""
    if isinstance(exc, LLMError):
        return {
            "message": f"The upstream stream failed: {exc.message}",
            "type": "upstream_error",
            "code": exc.code,
            "param": None,
        }
    parts = error_parts(exc)
    assert parts is not None  # a ServiceError always has its envelope
    return dict(parts[0]["error"])


def mark_failed(job_id: str, error: dict[str, Any], *, delivery: int | None) -> None:
    """The last word when the task itself failed (time limit, crash): the job never stays running. ``delivery``
    (None when the job was not claimed) fences it: a delivery that lost its lease fails nothing another runs."""
    lifecycle.job_fail(job_id, error, delivery=delivery)
