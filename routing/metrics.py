"""Prometheus metrics of the gateway, served at ``/metrics`` (``spignosapi/metrics.py`` puts the scrape together)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
