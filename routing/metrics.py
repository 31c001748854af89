"""Prometheus metrics of the gateway, served at ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

if TYPE_CHECKING:
    from .gateway import Prepared

REQUESTS = Counter("spignos_requests_total", "Gateway requests", ["endpoint", "model", "status"])
LATENCY = Histogram(
    "spignos_request_latency_seconds",
    "Gateway request latency",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TTFT = Histogram(
    "spignos_ttft_seconds",
    "Time to first token of streamed requests",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8.5, 15, 35, 50, 100),
)
TOKENS = Counter("spignos_tokens_total", "Tokens", ["model", "kind"])
COST = Counter("spignos_cost_usd_total", "Cost in USD", ["model"])
ENERGY = Counter("spignos_energy_wh_total", "Energy in Wh", ["model"])
FALLBACKS = Counter("spignos_fallbacks_total", "Models tried and left for the next one", ["category", "outcome"])


def observe(prepared: Prepared, meta: dict[str, Any], status: str) -> None:
    endpoint = prepared.call.endpoint
    model = meta["model"] or "none"
    REQUESTS.labels(endpoint, model, status).inc()
    LATENCY.labels(endpoint).observe(meta["response_time_ms"] / 1000)
    if meta["ttft_ms"] is not None:
        TTFT.labels(model).observe(meta["ttft_ms"] / 1000)
    if meta["prompt_tokens"]:
        TOKENS.labels(model, "prompt").inc(meta["prompt_tokens"])
    if meta["completion_tokens"]:
        TOKENS.labels(model, "completion").inc(meta["completion_tokens"])
    COST.labels(model).inc(meta["cost_usd"])
    ENERGY.labels(model).inc(meta["energy_wh"])
    for attempt in prepared.attempts:
        if attempt["outcome"] != "ok":
            FALLBACKS.labels(prepared.route.category or "none", attempt["outcome"]).inc()


class BreakerCollector(Collector):
    """Breaker state per model at scrape time (0 closed, 1 half-open, 2 open), read from the database."""

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "spignos_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)", labels=["model"]
        )

    def describe(self) -> Any:
        # Without it, registering would collect (query the database) at import time to learn the name.
        yield self._family()

    def collect(self) -> Any:
        from .selectors import breaker_rows

        gauge = self._family()
        values = {"closed": 0, "half_open": 1, "open": 2}
        try:
            rows = breaker_rows()
        except Exception:
            rows = []
        for row in rows:
            gauge.add_metric([row["model"]], values.get(row["state"], 0))
        yield gauge


class QueueCollector(Collector):
    """Messages waiting in each Celery queue at scrape time, as the broker counts them."""

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("spignos_queue_depth", "Messages waiting per Celery queue", labels=["queue"])

    def describe(self) -> Any:
        # Without it, registering would collect (ask the broker) at import time to learn the name.
        yield self._family()

    def collect(self) -> Any:
        from jobs.api import queue_depths

        gauge = self._family()
        try:
            depths = queue_depths()
        except Exception:  # the broker is down: no sample rather than a failed scrape
            depths = {}
        for name, depth in depths.items():
            if depth is not None:
                gauge.add_metric([name], depth)
        yield gauge


def _scrape_registry() -> CollectorRegistry:
    """What ``/metrics`` serves: this process's registry, or — in Prometheus' multiprocess mode, when
    ``PROMETHEUS_MULTIPROC_DIR`` is set — every web process's counters and histograms summed from the files
    they write there, plus the collectors computed at scrape time (once: they read shared state, not the
    process's own). The default registry's process and platform collectors describe one process only, so
    that mode leaves them out. Any gauge added later needs a ``multiprocess_mode`` (e.g. ``livesum``).
    """
    collectors = (BreakerCollector(), QueueCollector())
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
