"""Submitting, running and cancelling async generation jobs."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey
from accounts.selectors import KeyInfo
from llm import LLMError
from routing import gateway, quota
from spignosapi.api.errors import ApiError, error_parts
from spignosapi.logs import JOB_ID_HEADER

from .models import Job
from .streams import Publisher

logger = logging.getLogger(__name__)


def queue_for(priority: int) -> str:
    """Contract: priority >= 5 → high, <= -5 → low, else default."""
    if priority >= 5:
        return "high"
    if priority <= -5:
        return "low"
    return "default"


def job_submit(*, key: KeyInfo | None, owner_id: int | None, request: dict[str, Any], priority: int) -> Job:
    """Write the job and enqueue its task once the row is committed (a worker must find it)."""
    from .tasks import run_generation

    job = Job(
        api_key_id=key.id if key else None,
        owner_id=owner_id,
        priority=priority,
        queue=queue_for(priority),
        request=request,
    )
    job.task_id = str(job.id)  # the id is made here (uuid4), so the row is written once
    job.save(force_insert=True)
    # The job id travels in the headers too: every record the worker logs while it runs carries it.
    headers = {JOB_ID_HEADER: str(job.id)}
    transaction.on_commit(
        lambda: run_generation.apply_async(args=[str(job.id)], queue=job.queue, task_id=job.task_id, headers=headers)
    )
    return job


def cancel_flag(job_id: Any) -> str:
    return f"job:{job_id}:cancelled"


def job_cancel(*, job: Job) -> Job:
    """Mark the job cancelled; a running worker stops at its next token and the stream ends with an error."""
    from spignosapi.celery import app

    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_finished:
            return locked
        locked.status = Job.Status.CANCELLED
        locked.finished_at = timezone.now()
        locked.error = {"message": "The job was cancelled.", "type": "cancelled", "code": "cancelled", "param": None}
        locked.save(update_fields=["status", "finished_at", "error"])
    cache.set(cancel_flag(job.pk), 1, timeout=3600)
    app.control.revoke(locked.task_id)  # a queued task is dropped; a running one sees the flag
    from asgiref.sync import async_to_sync

    async_to_sync(_publish_once)(locked.session_id, {"type": "error", "error": locked.error})
    return locked


async def _publish_once(session_id: str, message: dict[str, Any]) -> None:
    publisher = Publisher(session_id)
    try:
        await publisher.publish(message)
    finally:
        await publisher.close()


def _key_info(job: Job) -> KeyInfo | None:
    if job.api_key_id is None:
        return None
    key = ApiKey.objects.filter(pk=job.api_key_id).first()
    if key is None:
        return None
    return KeyInfo(
        key.pk,
        key.name,
        key.is_staff,
        key.rpm_limit,
        key.tpm_limit,
        key.max_tokens_cap,
        key.max_prompt_tokens,
        key.owner_id,
        key.hashed_key,
    )


def _start(job_id: str) -> tuple[Job, KeyInfo | None, bool] | None:
    """Claim the job for this delivery; None when it is finished or gone (a duplicate delivery)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished:
            return None
        redelivered = job.deliveries > 0
        job.status = Job.Status.RUNNING
        job.deliveries += 1
        job.started_at = job.started_at or timezone.now()
        job.save(update_fields=["status", "deliveries", "started_at"])
    return job, _key_info(job), redelivered


def _finish(job_id: Any, **fields: Any) -> bool:
    """Store the outcome unless the job was cancelled meanwhile; True when stored."""
    fields["finished_at"] = timezone.now()
    return bool(Job.objects.filter(pk=job_id).exclude(status=Job.Status.CANCELLED).update(**fields))


def _requeue(job_id: Any) -> None:
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(status=Job.Status.QUEUED)


class RetryableFailure(Exception):
    """Raised to the task so Celery retries it with backoff (no token had been streamed)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "retryable failure"))
        self.error = error


def _call_for(job: Job, key: KeyInfo | None) -> gateway.Call:
    data = job.request
    messages = [{"role": "system", "content": data["system"]}] if data.get("system") else []
    messages.append({"role": "user", "content": data["prompt"]})
    return gateway.Call(
        key=key,
        request_id=f"job-{job.pk}",
        endpoint="generate.async",
        messages=messages,
        temperature=data.get("temperature", 0.7),
        top_p=data.get("top_p", 1.0),
        max_tokens=data.get("max_tokens", 256),
        user_id=data.get("user_id", ""),
        model=data.get("model"),
        category=data.get("category"),
        route_mode=data.get("route_mode"),
        stream=True,
        reservation=quota.Reservation.from_dict(data["reservation"]) if data.get("reservation") else None,
    )


async def job_run(job_id: str, *, final_attempt: bool) -> str:
    """Run one delivery of the job: route, stream every token to the session, store the outcome.

    Returns the final status. Raises ``RetryableFailure`` for a retryable failure before any token when
    more attempts remain.
    """
    started = await sync_to_async(_start, thread_sensitive=False)(job_id)
    if started is None:
        return "skipped"
    job, key, redelivered = started
    publisher = Publisher(job.session_id)
    flag = cancel_flag(job.pk)
    try:
        # Clients drop what an earlier delivery streamed; a delivery that failed before any token sent nothing.
        if redelivered and await publisher.published():
            await publisher.publish({"type": "reset"})
        try:
            prepared = await gateway.prepare(_call_for(job, key), None)
        except ApiError as exc:  # e.g. a category or model deleted since the job was submitted
            error = _error_of(exc)
            if await sync_to_async(_finish, thread_sensitive=False)(job.pk, status=Job.Status.FAILED, error=error):
                logger.warning("job failed: %s", error.get("code"))  # the record carries the job's ids
                await publisher.publish({"type": "error", "error": error})
            return "failed"
        text: list[str] = []
        result = None
        model_id = None
        try:
            async for event in gateway.stream(prepared):
                if isinstance(event, gateway.StreamStart):
                    model_id = event.model_id
                    continue
                if event.type == "delta" and event.content:
                    if await sync_to_async(cache.get, thread_sensitive=False)(flag):
                        # The tokens produced until now are the key's: settle its reservation with them.
                        partial = gateway.partial_result(prepared, model_id, text) if model_id and text else None
                        meta = gateway.build_meta(prepared, partial, model_id)
                        await gateway.finish(prepared, meta, status="cancelled", error_code="cancelled")
                        return "cancelled"
                    text.append(event.content)
                    await publisher.publish({"type": "chunk", "content": event.content})
                elif event.type == "done":
                    result = event.result
        except (ApiError, LLMError) as exc:
            # Tokens already streamed are booked (counted from the text) when the stream broke off.
            partial = gateway.partial_result(prepared, model_id, text) if model_id and text else None
            meta = gateway.build_meta(prepared, result or partial, model_id)
            error = _error_of(exc)
            retry = not text and _retryable(exc) and not final_attempt
            # A retried job keeps its tokens reservation for the next try, which settles it.
            await gateway.finish(prepared, meta, status="error", error_code=str(error.get("code")), final=not retry)
            if retry:
                await sync_to_async(_requeue, thread_sensitive=False)(job.pk)
                raise RetryableFailure(error) from None
            if await sync_to_async(_finish, thread_sensitive=False)(
                job.pk, status=Job.Status.FAILED, error=error, output="".join(text), meta=meta
            ):
                logger.warning("job failed: %s", error.get("code"))
                await publisher.publish({"type": "error", "error": error})
            return "failed"
        meta = gateway.build_meta(prepared, result, model_id)
        await gateway.finish(prepared, meta)
        output = result.text if result is not None else "".join(text)
        if await sync_to_async(_finish, thread_sensitive=False)(
            job.pk, status=Job.Status.SUCCEEDED, output=output, meta=meta, error=None
        ):
            await publisher.publish({"type": "complete", "meta": meta})
            return "succeeded"
        return "cancelled"
    finally:
        await publisher.close()


def _error_of(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, LLMError):
        return {
            "message": f"The upstream stream failed: {exc.message}",
            "type": "upstream_error",
            "code": exc.code,
            "param": None,
        }
    parts = error_parts(exc)
    assert parts is not None
    return dict(parts[0]["error"])


# The chain failed for passing reasons: every model errored or timed out. A refusal the gateway passed on
# (bad request, the provider's credentials, an unknown model: 400 or 502 too) is final, as is a category
# with no model; "no_model_available" with Retry-After means every model sat behind an open breaker.
_RETRYABLE_CODES = frozenset({"all_models_failed", "upstream_timeout"})


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, LLMError):
        return exc.retryable
    if not isinstance(exc, ApiError):
        return False
    code = str(exc.get_codes())
    return code in _RETRYABLE_CODES or (code == "no_model_available" and "Retry-After" in exc.headers)


def mark_failed(job_id: str, error: dict[str, Any]) -> None:
    """The last word when the task itself failed (time limit, crash): the job never stays running."""
    if _finish(job_id, status=Job.Status.FAILED, error=error):
        job = Job.objects.filter(pk=job_id).first()
        if job is not None:
            from asgiref.sync import async_to_sync

            async_to_sync(_publish_once)(job.session_id, {"type": "error", "error": error})
