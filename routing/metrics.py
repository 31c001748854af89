"""Prometheus metrics of the gateway, served at ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

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

    def collect(self) -> Any:
        from .selectors import breaker_rows

        gauge = GaugeMetricFamily(
            "spignos_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)", labels=["model"]
        )
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

    def collect(self) -> Any:
        from jobs.api import queue_depths

        gauge = GaugeMetricFamily("spignos_queue_depth", "Messages waiting per Celery queue", labels=["queue"])
        try:
            depths = queue_depths()
        except Exception:  # the broker is down: no sample rather than a failed scrape
            depths = {}
        for name, depth in depths.items():
            if depth is not None:
                gauge.add_metric([name], depth)
        yield gauge


REGISTRY.register(BreakerCollector())
REGISTRY.register(QueueCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
