"""The Celery application; configuration comes from the ``CELERY_*`` Django settings."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from spignosapi import logs, tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spignosapi.settings")

app = Celery("spignosapi")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# --- logs: a task's records carry the id of the request that sent it (and of its job) ----------------------


@signals.before_task_publish.connect(weak=False)
def _send_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    logs.task_headers_add(headers)


@signals.task_prerun.connect(weak=False)
def _log_context_enter(task_id: str, task: Any, **_: Any) -> None:
    logs.task_context_enter(task_id, task.request)


@signals.task_postrun.connect(weak=False)
def _log_context_exit(task_id: str, **_: Any) -> None:
    logs.task_context_exit(task_id)


# --- database connections: given back to the pool around each task (settings/celery.py, CELERY_DB_REUSE_MAX) -


@signals.task_prerun.connect(weak=False)
@signals.task_postrun.connect(weak=False)
def _tidy_connections(**_: Any) -> None:
    from django.db import close_old_connections

    close_old_connections()  # with the pool (CONN_MAX_AGE 0): back to the pool; a broken one is dropped


# --- traces (when an OTLP endpoint is configured): set up in each process that runs or schedules tasks ------


@signals.worker_process_init.connect(weak=False)
def _trace_pool_process(**_: Any) -> None:
    tracing.setup("worker")  # in each pool process, after the fork (prefork), or in the solo pool's process


@signals.worker_process_shutdown.connect(weak=False)
def _flush_traces(**_: Any) -> None:
    tracing.flush()


@signals.beat_init.connect(weak=False)
def _trace_beat(**_: Any) -> None:
    tracing.setup("beat")


# --- the garbage collector: start-up objects frozen before the pool forks (spignosapi/runtime.py) -----------


@signals.worker_init.connect(weak=False)
def _freeze_startup_objects(**_: Any) -> None:
    from spignosapi import runtime

    runtime.freeze_startup_objects()  # the pool's processes inherit it (and share those pages, untouched)


@signals.worker_process_shutdown.connect(weak=False)
def _close_loops(**_: Any) -> None:
    from spignosapi import loops

    loops.close_all()  # the process's event loops (spignosapi/loops.py), and the clients pooled on them
