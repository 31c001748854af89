"""``POST /api/v1/generate/async``, ``/api/v1/jobs/<id>``, the SSE stream and ``/api/v1/stats``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import KeyInfo
from routing import gateway, limits, quota
from spignosapi import shutdown
from spignosapi.api.asyncviews import async_endpoint, authenticate, dumps, json_body, validated
from spignosapi.api.errors import NotFound
from spignosapi.api.schema import SSE_EVENT

from . import lifecycle, selectors, services
from .metrics import queue_depths
from .models import Job
from .serializers import GenerateAsyncInput, JobAccepted, JobOutput
from .streams import TERMINAL, buffer_key, redis_client, subscribe

# How soon a client whose stream ended because its server was shutting down reconnects (SSE ``retry:``).
RECONNECT_MS = 1000


def _caller(request: Request) -> tuple[KeyInfo | None, int | None, bool]:
    key = request.auth if isinstance(request.auth, KeyInfo) else None
    user = request.user
    user_id = user.pk if key is None and getattr(user, "is_authenticated", False) else None
    return key, user_id, bool(getattr(user, "is_staff", False))


def _call(key: KeyInfo | None, request_id: str, values: dict[str, Any]) -> gateway.Call:
    """The job's call as the worker will run it (``jobs.services``), admitted now."""
    return gateway.generation_call(values, key=key, request_id=request_id, endpoint="generate.async", stream=True)


def _with(values: dict[str, Any], reservation: quota.Reservation | None) -> dict[str, Any]:
    """The job's request and the key's tokens reservation made at submission, which the worker settles
    when the job is done (``jobs.services``)."""
    return {**values, "reservation": reservation.as_dict()} if reservation is not None else values


def _accepted(job: Job) -> dict[str, Any]:
    return {
        "status": "queued",
        "job_id": str(job.id),
        "task_id": job.task_id,
        "session_id": job.session_id,
        "stream_url": f"/api/v1/stream/{job.session_id}",
        "ws_url": f"/ws/v1/stream/{job.session_id}/",
        "status_url": reverse("job-detail", args=[job.id]),
    }


class GenerateAsyncView(APIView):
    """Browser sessions (the chat page: DRF checks their CSRF token); API keys take ``_submit`` below."""

    @extend_schema(
        operation_id="generate_async",
        summary="Queue a generation job (answers 202 at once)",
        request=GenerateAsyncInput,
        responses={202: JobAccepted},
    )
    def post(self, request: Request) -> Response:
        data = GenerateAsyncInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        priority = values.pop("priority")
        values.pop("stream", None)
        key, user_id, _ = _caller(request)
        reservation = gateway.admit(_call(key, request._request.request_id, values))  # type: ignore[attr-defined]
        try:
            job = services.job_submit(key=key, owner_id=user_id, request=_with(values, reservation), priority=priority)
        except BaseException:  # nothing is kept: neither the job nor its tokens
            limits.settle_tokens_sync(reservation, 0)
            raise
        body = _accepted(job)
        return Response(body, status=202, headers={"Location": body["status_url"]})


_session_view = GenerateAsyncView.as_view()


def _session_submit(request: HttpRequest) -> HttpResponseBase:
    response: HttpResponseBase = _session_view(request)
    return response.render() if isinstance(response, Response) else response


async def _submit(request: HttpRequest) -> HttpResponseBase:
    """An API key's submission: validation and the key's limits (one Redis round trip) on the event loop, then
    one hop to the request's thread to write the job and enqueue it."""
    if "HTTP_AUTHORIZATION" not in request.META and "HTTP_X_API_KEY" not in request.META:
        return await sync_to_async(_session_submit)(request)
    key = await authenticate(request)
    values = validated(GenerateAsyncInput, json_body(request))
    priority = values.pop("priority")
    values.pop("stream", None)
    reservation = await gateway.aadmit(_call(key, request.request_id, values))  # type: ignore[attr-defined]
    try:
        job = await sync_to_async(services.job_submit)(
            key=key, owner_id=None, request=_with(values, reservation), priority=priority
        )
    except BaseException:  # nothing is kept: neither the job nor its tokens
        await limits.settle_tokens(reservation, 0)
        raise
    body = _accepted(job)
    return HttpResponse(
        dumps(body), status=202, content_type="application/json", headers={"Location": body["status_url"]}
    )


generate_async_view = async_endpoint(GenerateAsyncView, {"POST": _submit})


class JobDetailView(APIView):
    def _job(self, request: Request, job_id: str) -> Job:
        key, user_id, is_staff = _caller(request)
        job = selectors.job_for({"pk": job_id}, key_id=key.id if key else None, user_id=user_id, is_staff=is_staff)
        if job is None:
            raise NotFound("No such job.", code="job_not_found")
        return job

    @extend_schema(summary="A job's status, output and meta", responses={200: JobOutput})
    def get(self, request: Request, job_id: str) -> Response:
        return Response(JobOutput(self._job(request, job_id)).data)

    @extend_schema(summary="Cancel a job", responses={200: JobOutput})
    def delete(self, request: Request, job_id: str) -> Response:
        job = services.job_cancel(job=self._job(request, job_id))
        return Response(JobOutput(job).data)


async def _stream(request: HttpRequest, session_id: str) -> HttpResponseBase:
    key: KeyInfo | None = None
    user = await request.auser()
    if not user.is_authenticated or request.headers.get("Authorization") or request.headers.get("X-API-Key"):
        key = await authenticate(request)
    job = await sync_to_async(selectors.job_for, thread_sensitive=False)(
        {"session_id": session_id},
        key_id=key.id if key else None,
        user_id=user.pk if key is None and user.is_authenticated else None,
        is_staff=key.is_staff if key else bool(user.is_staff),
    )
    if job is None:
        raise NotFound("No such stream.", code="stream_not_found")
    seq = await _resume_after(session_id, _last_event_id(request))

    async def body() -> AsyncIterator[str]:
        nonlocal seq
        last: dict[str, Any] | None = None
        # Each message's id is its sequence number: a client that reconnects sends the last one it received as
        # Last-Event-ID (EventSource does) and the replay resumes after it.
        async for last in subscribe(
            session_id, after=seq, stop=shutdown.stopping(), ending=lifecycle.stream_ending(job.pk)
        ):
            if last is None:
                yield ": keep-alive\n\n"
                continue
            seq += 1
            yield f"id: {seq}\ndata: {dumps(last)}\n\n"
        if last is None or last.get("type") not in TERMINAL:
            # Ended because this process is shutting down: reconnect (soon, to another process) and resume.
            yield f"retry: {RECONNECT_MS}\n\n"

    return StreamingHttpResponse(
        body(), content_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _last_event_id(request: HttpRequest) -> int:
    """The client's Last-Event-ID; 0 (none) for a value that is no id of ours, as EventSource clients resend
    whatever id they last saw."""
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0


async def _resume_after(session_id: str, last_event_id: int) -> int:
    """How many of the stream's messages the client already has: ``last_event_id``, unless the stream never
    gave that id (it is past its end), then none. Asked here, not left to ``subscribe``, because the ids the
    view numbers its messages with must start from the same place as the replay (one more round trip, for a
    reconnecting client only)."""
    if not last_event_id:
        return 0
    client = redis_client()
    try:
        length = int(await client.xlen(buffer_key(session_id)))
    finally:
        await client.aclose()
    return last_event_id if last_event_id <= length else 0


class StreamView(APIView):
    @extend_schema(
        operation_id="job_stream",
        summary="A job's tokens as server-sent events (replayed, then live)",
        description=(
            "Each event's id is its sequence number. A stream ended because its server was stopping ends with "
            "a retry hint: reconnect with Last-Event-ID to resume."
        ),
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="The id of the last event received: the stream resumes after it (an unknown one: "
                "from the start).",
            )
        ],
        responses={(200, "text/event-stream"): SSE_EVENT},
    )
    def get(self, request: Request, session_id: str) -> Response:  # pragma: no cover - documentation only
        raise exceptions.MethodNotAllowed("GET")


stream_view = async_endpoint(StreamView, {"GET": _stream})


def workers_online() -> list[dict[str, Any]] | None:
    """Each worker that answered and its queues; None when the broker could not be reached to ask."""
    from celery import current_app as app  # the project's app, not imported: it sits above the apps

    from .lifecycle import BROKER_ERRORS

    try:
        replies = app.control.inspect(timeout=1.0).active_queues() or {}
    except BROKER_ERRORS:
        return None
    return [{"name": name, "queues": sorted(q["name"] for q in queues)} for name, queues in sorted(replies.items())]


class StatsView(APIView):
    @extend_schema(summary="Queues, workers, jobs and throughput", responses={200: dict})
    def get(self, request: Request) -> Response:
        from ledger.models import UsageRecord

        started = time.perf_counter()
        minute_ago = timezone.now() - timedelta(minutes=1)
        body: dict[str, Any] = {
            "queues": queue_depths(),
            "workers": workers_online(),
            "jobs": selectors.jobs_by_status(),
            "throughput": {
                "jobs_finished_last_minute": Job.objects.filter(finished_at__gte=minute_ago).count(),
                "requests_last_minute": UsageRecord.objects.filter(created_at__gte=minute_ago).count(),
            },
        }
        body["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return Response(body)
