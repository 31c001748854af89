"""Default beat schedules of the monitor, a statistics row per monitored model, the maintenance flag.

Idempotent: rows that exist are left as an admin may have edited them.

Scheduling: one periodic task, "monitoring: probe models", wakes up every ``MONITORING_TICK_S`` (1 min)
and probes the models that are due, each on its own ``probe_interval_s`` (default 600 s, edited per
model in the admin under "model statistics and schedules"). That is simpler than one periodic task per
model: models added later (by the admin or ``sync_providers``) are probed without creating schedules,
and one run probes every due model concurrently with a bound.
"""

from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from routing.models import LLMModel

from .models import ModelStats, MonitoringSettings

PROBE_TASK_NAME = "monitoring: probe models"
STATS_TASK_NAME = "monitoring: refresh stats"
PRUNE_TASK_NAME = "monitoring: prune"


def _every(seconds: int) -> IntervalSchedule:
    schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    return schedule


def seed_defaults() -> str:
    created = 0
    queue = settings.MONITORING_QUEUE
    tick = settings.MONITORING_TICK_S
    schedules: list[tuple[str, str, dict[str, object]]] = [
        # A tick nobody ran before the next one is useless: let it expire.
        (PROBE_TASK_NAME, "monitoring.probe_due", {"interval": _every(tick), "expire_seconds": tick}),
        (STATS_TASK_NAME, "monitoring.refresh_stats", {"interval": _every(settings.MONITORING_STATS_REFRESH_S)}),
    ]
    daily, _ = CrontabSchedule.objects.get_or_create(
        minute="17", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    schedules.append((PRUNE_TASK_NAME, "monitoring.prune", {"crontab": daily}))
    for name, task, schedule in schedules:
        _, was_created = PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "queue": queue, **schedule}
        )
        created += was_created
    for pk in LLMModel.objects.filter(monitor=True, kind="chat").values_list("pk", flat=True):
        created += ModelStats.objects.get_or_create(model_id=pk)[1]
    created += MonitoringSettings.objects.get_or_create(pk=1)[1]
    return f"{created} rows created" if created else "already seeded"
