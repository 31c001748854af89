"""Ids carried through logs: the request id (per request, or per Celery task: the request that sent it), the
job id of a job's task, and the trace and span ids when tracing is on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)

# Celery message headers: the request that sent a task, the job a task works on.
REQUEST_ID_HEADER = "spignos_request_id"
JOB_ID_HEADER = "spignos_job_id"

# Set by spignosapi.tracing when tracing is on: the current span's (trace id, span id) in hex, or None.
current_trace_ids: Callable[[], tuple[str, str] | None] | None = None


class RequestIDFilter(logging.Filter):
    """Adds ``record.request_id`` (``None`` outside a request) so every formatter can print it, and
    ``job_id``, ``trace_id`` and ``span_id`` when there are any (the JSON formatter prints them all)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        job_id = job_id_var.get()
        if job_id is not None:
            record.job_id = job_id
        if current_trace_ids is not None:
            ids = current_trace_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True


# --- Celery: the ids travel in the task's message headers --------------------------------------------------

_task_tokens: dict[str, tuple[Token[str | None], Token[str | None]]] = {}


def task_headers_add(headers: dict[str, Any] | None) -> None:
    """A task sent while a request (or a task) is handled carries that request's id."""
    request_id = request_id_var.get()
    if headers is not None and request_id is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def task_context_enter(task_id: str, request: Any) -> None:
    """From ``task_prerun``: every record logged until ``task_postrun`` carries the task's ids."""
    _task_tokens[task_id] = (
        request_id_var.set(request.get(REQUEST_ID_HEADER)),
        job_id_var.set(request.get(JOB_ID_HEADER)),
    )


def task_context_exit(task_id: str) -> None:
    tokens = _task_tokens.pop(task_id, None)
    if tokens is not None:
        request_id_var.reset(tokens[0])
        job_id_var.reset(tokens[1])
