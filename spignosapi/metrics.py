"""``/metrics``: the gateway's counters and histograms (``routing/metrics.py``) and the gauges the apps
compute at scrape time (breaker states from routing, queue depths from jobs).

The scrape is put together here, on top of the apps, so that no app imports another to be listed: a new
gauge is a ``Collector`` in its app, named in ``SCRAPE_COLLECTORS``.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from budgets.metrics import BudgetCollector
from jobs.metrics import QueueCollector
from routing.metrics import BreakerCollector

SCRAPE_COLLECTORS: tuple[type[Collector], ...] = (BreakerCollector, QueueCollector, BudgetCollector)


def _scrape_registry() -> CollectorRegistry:
    """What ``/metrics`` serves: this process's registry, or — in Prometheus' multiprocess mode, when
    ``PROMETHEUS_MULTIPROC_DIR`` is set — every web process's counters and histograms summed from the files
    they write there, plus the collectors computed at scrape time (once: they read shared state, not the
    process's own). The default registry's process and platform collectors describe one process only, so
    that mode leaves them out. Any gauge added later needs a ``multiprocess_mode`` (e.g. ``livesum``).
    """
    collectors = [collector() for collector in SCRAPE_COLLECTORS]
    if not settings.PROMETHEUS_MULTIPROC_DIR:
        for collector in collectors:
            REGISTRY.register(collector)
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    for collector in collectors:
        registry.register(collector)
    return registry


SCRAPE_REGISTRY = _scrape_registry()


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(SCRAPE_REGISTRY), content_type=CONTENT_TYPE_LATEST)
