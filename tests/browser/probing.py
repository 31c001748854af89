"""Probing the demo models from a browser test, now, as the worker would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from monitoring.models import Probe
from monitoring.services import probe_run
from routing.selectors import routing_config


def probe(*model_ids: str, now: Callable[[], datetime] = timezone.now) -> list[Probe]:
    """Probe these models now, over HTTP to the fake upstream, as the worker would."""
    models = routing_config.get(recheck=True).models
    return probe_run(model_pks=[models[m].pk for m in model_ids], now=now)
