"""Celery: Redis by default, RabbitMQ when ``CELERY_BROKER_URL=amqp://…``; results always on Redis."""

from __future__ import annotations

from kombu.entity import Exchange, Queue

from .env import env_bool, env_int, env_str
from .redis import REDIS_BROKER_URL, REDIS_RESULTS_URL

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_BROKER_URL
CELERY_RESULT_BACKEND = REDIS_RESULTS_URL
# Each queue bound to its own name, so a task sent to "high" lands only there.
# Tasks outside an app's tasks.py (autodiscovery finds those): the webhook delivery of spignosapi.webhooks.
CELERY_IMPORTS = ("spignosapi.webhooks",)
CELERY_TASK_QUEUES = tuple(Queue(name, Exchange(name), routing_key=name) for name in ("high", "default", "low"))
CELERY_TASK_DEFAULT_EXCHANGE = "default"
CELERY_TASK_DEFAULT_ROUTING_KEY = "default"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 10 if CELERY_TASK_TIME_LIMIT > 20 else None
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A job running when the broker connection drops goes on: its outcome goes to the database and its stream to
# Redis (retried), and a late acknowledgement at worst leaves a duplicate that finds the job finished. Said
# explicitly: Celery 6 is to cancel such tasks by default.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# A task whose worker died unacknowledged is redelivered after this many seconds (Redis broker). It must
# exceed the longest task run, or a task still running is handed to a second worker.
_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _VISIBILITY_TIMEOUT,
    # kombu looks for expired unacknowledged tasks every interval × throttle seconds (100 s by default), so
    # a short visibility timeout alone would still wait up to 100 s: sweep every third of it, at most 10 s.
    "unacked_restore_interval": max(1, min(10, _VISIBILITY_TIMEOUT // 3)),
    "unacked_restore_throttle": 1,
    # Workers consume high, then default, then low: a high job overtakes queued low ones.
    "queue_order_strategy": "priority",
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# django-celery-beat's DatabaseScheduler, made to outlive a database outage (spignosapi/beat.py).
CELERY_BEAT_SCHEDULER = "spignosapi.beat:ResilientDatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"

# Beat proves it is alive by scheduling this task; /health/full reads the time it last ran.
BEAT_HEARTBEAT_SECONDS = env_int("BEAT_HEARTBEAT_SECONDS", 30, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "beat-heartbeat": {
        "task": "spignosapi.tasks.beat_heartbeat",
        "schedule": float(BEAT_HEARTBEAT_SECONDS),
        "options": {"queue": "high", "expires": float(BEAT_HEARTBEAT_SECONDS)},
    },
}

# --- the life of async jobs (jobs/lifecycle.py) ---------------------------------------------------------------
# A running job holds a lease its worker renews every third of JOB_LEASE_SECONDS; a job whose lease ran out
# (its worker died) is sent again by the sweeper, which beat runs every JOB_SWEEP_SECONDS. The sweeper also
# publishes jobs accepted while the broker was down, sends again a queued job no worker started within
# JOB_REDISPATCH_SECONDS of its last sending (its message was lost), fails a job whose workers were lost
# JOB_MAX_DELIVERIES times, and fails every job still unfinished JOB_DEADLINE_SECONDS after it was accepted.
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 30, minimum=3)
JOB_SWEEP_SECONDS = env_int("JOB_SWEEP_SECONDS", 15, minimum=1)
JOB_REDISPATCH_SECONDS = env_int("JOB_REDISPATCH_SECONDS", 600, minimum=1)
JOB_MAX_DELIVERIES = env_int("JOB_MAX_DELIVERIES", 5, minimum=1)
JOB_DEADLINE_SECONDS = env_int("JOB_DEADLINE_SECONDS", 3600, minimum=60)
# A job that met an unreachable database, broker or Redis is tried again with backoff (2 s doubling up to
# 60 s, with jitter): this many times, about five minutes in all, before it is failed.
JOB_INFRA_RETRIES = env_int("JOB_INFRA_RETRIES", 9, minimum=0)
CELERY_BEAT_SCHEDULE["jobs-sweep"] = {
    "task": "jobs.sweep",
    "schedule": float(JOB_SWEEP_SECONDS),
    # A sweep nobody ran before the next one is useless.
    "options": {"queue": "high", "expires": float(JOB_SWEEP_SECONDS)},
}

# Celery's Django fixup closes every database connection, and with a pool the whole pool, before and after
# each task in a prefork child. A pool closed under the usage writer's thread failed its flush ("the pool is
# closed": 17 errors in a 10-minute soak). With this count the fixup leaves them (it still drops what a
# child inherits from its parent at fork); the task signals in spignosapi/celery.py give each task's
# connection back to the pool instead, and drop one that broke, as Django does around a request.
CELERY_DB_REUSE_MAX = 10**9

# Stored Responses API answers older than RESPONSES_RETENTION_DAYS are already invisible (every read filters
# on their age); this deletes them so the table does not grow without end.
CELERY_BEAT_SCHEDULE["responses-purge"] = {
    "task": "routing.purge_expired_responses",
    "schedule": 3600.0,
    "options": {"queue": "low", "expires": 3600.0},
}
