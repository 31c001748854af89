"""Celery tasks of the monitor: thin wrappers over ``monitoring.services``.

Beat sends them from rows of django-celery-beat (seeded by ``monitoring.seed``, edited in the admin):
``probe_due`` every tick (probes the models whose own interval has elapsed, then looks at every model's
incident: a breaker opened by real traffic is seen within a tick), ``refresh_stats`` every
15 minutes and ``prune`` daily. ``probe_models`` is the on-demand refresh (``POST /monitoring/refresh``).
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from routing.services import publish_latency_figures

from . import incidents, selectors, services


@shared_task(name="monitoring.probe_due", ignore_result=True)
def probe_due() -> int:
    probed = len(services.probe_due_models())
    incidents.incidents_update(now=timezone.now())
    return probed


@shared_task(name="monitoring.probe_models")
def probe_models(model_pks: list[int]) -> list[int]:
    """Probe these models now; returns the ids of the stored probes."""
    return [probe.pk for probe in services.probe_run(model_pks=model_pks)]


@shared_task(name="monitoring.refresh_stats", ignore_result=True)
def refresh_stats() -> int:
    now = timezone.now()
    services.rollups_update(now=now)
    refreshed = services.stats_refresh(now=now)  # the latency roll-ups too
    # The latency routing strategy's figures: routing cannot import monitoring, so monitoring pushes them.
    publish_latency_figures(selectors.latency_figures("1h", now=now))
    return refreshed


@shared_task(name="monitoring.prune", ignore_result=True)
def prune() -> dict[str, int]:
    return services.prune(now=timezone.now())
