"""Celery: Redis by default, RabbitMQ when ``CELERY_BROKER_URL=amqp://…``; results always on Redis."""

from __future__ import annotations

from kombu import Exchange, Queue

from .env import env_bool, env_int, env_str
from .redis import REDIS_BROKER_URL, REDIS_RESULTS_URL

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_BROKER_URL
CELERY_RESULT_BACKEND = REDIS_RESULTS_URL
# Each queue bound to its own name, so a task sent to "high" lands only there.
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
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
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
