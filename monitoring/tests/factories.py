"""Monitoring test helpers: extra models on the demo provider, and probe rows written directly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from monitoring.models import ModelStats, Probe
from routing.models import LLMModel, Provider
from routing.services import routing_changed

# A fixed "now" for tests that inject the wall clock.
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def add_model(name: str, *, provider: str = "demo", monitor: bool = True, kwh: float | None = 0.05) -> LLMModel:
    """A model of the fake upstream (any name works there), seen by every process at once."""
    model = LLMModel.objects.create(
        provider=Provider.objects.get(name=provider),
        name=name,
        price_in_per_m=0.10,
        price_out_per_m=0.40,
        energy_kwh_per_m=kwh,
        monitor=monitor,
    )
    routing_changed()
    return model


def make_probe(model: LLMModel, checked_at: datetime, *, last: bool = False, **fields: Any) -> Probe:
    """A probe row; ``ok`` defaults from ``status`` (unknown means an error), times from ``total_ms``."""
    status = fields.pop("status", "smooth")
    ok = fields.pop("ok", status != "unknown")
    defaults: dict[str, Any] = {
        "http_status": 200 if ok else 503,
        "error_type": "" if ok else "upstream_error",
        "error": "" if ok else "Service Unavailable",
        "ttfb_ms": 100.0 if ok else None,
        "total_ms": 500.0,
        "tokens_per_sec": 40.0 if ok else None,
        "prompt_tokens": 12 if ok else None,
        "completion_tokens": 8 if ok else None,
        "energy_wh": 0.001 if ok else None,
    }
    defaults.update(fields)
    probe = Probe.objects.create(model=model, status=status, ok=ok, checked_at=checked_at, **defaults)
    if last:
        ModelStats.objects.update_or_create(model=model, defaults={"last_probe": probe})
    return probe


def demo(name: str) -> LLMModel:
    return LLMModel.objects.get(provider__name="demo", name=name)
