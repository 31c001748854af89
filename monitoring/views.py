"""The monitoring pages: the dashboard at ``/`` and the probe log at ``/results/`` (login required), and the
public status page at ``/status/``.

The dashboard and the log are server-rendered shells; their small scripts (``monitoring/static/monitoring/``)
read the JSON API with the session and update the page in place. The status page is complete without
JavaScript; its script only reloads it in place now and then.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import ensure_csrf_cookie

from routing.selectors import routing_config

from . import selectors
from .models import Bucket
from .probes import Thresholds
from .states import State

# (sort key = the /stats field it sorts on, header, numeric column)
# A column's name wraps where a space is (the nine fit a desktop that way); a no-break space keeps "24 h" and
# "p50 / p95" whole.
COLUMNS = [
    ("model", "Model", False),
    ("provider", "Provider", False),
    ("status", "Status", False),
    ("availability_24h", "Availability 24\N{NO-BREAK SPACE}h", True),
    ("ttfb_ms", "TTFT", True),
    # The 24 h percentiles (probes and traffic): the last probe's TTFT beside what is typical and what is slow.
    ("ttft_p50_p95", "TTFT p50\N{NO-BREAK SPACE}/\N{NO-BREAK SPACE}p95", True),
    ("tokens_per_sec", "Tokens/s", True),
    ("checked_at", "Last check", True),
    ("energy_wh", "Energy / probe", True),
]

# How often the dashboard polls /stats on its own.
POLL_SECONDS = 15

# The window of the history chart under a row.
HISTORY_HOURS = 24

# Probes per page of the log.
PAGE_SIZE = 25

SINCE_CHOICES = [("", "Any time"), ("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days")]


def _buckets() -> list[tuple[str, str]]:
    return [(str(bucket.value), str(bucket.label)) for bucket in Bucket]


def _bucket_limits() -> list[dict[str, Any]]:
    """The upper bound of each timed bucket (the history chart draws them as lines), in milliseconds."""
    thresholds = Thresholds.from_settings()
    bounds = [thresholds.smooth, thresholds.available, thresholds.congestion, thresholds.lagging]
    return [
        {"bucket": str(bucket.value), "label": str(bucket.label), "ms": seconds * 1000}
        for bucket, seconds in zip(list(Bucket)[:4], bounds, strict=True)
    ]


@login_required
@ensure_csrf_cookie
def dashboard(request: HttpRequest) -> HttpResponse:
    config = routing_config.get()
    context: dict[str, Any] = {
        "stats": selectors.stats_payload(),
        "columns": COLUMNS,
        "buckets": _buckets(),
        "demo_only": config.demo_only,
        "can_refresh": request.user.is_staff,
        "poll_seconds": POLL_SECONDS,
        "history_hours": HISTORY_HOURS,
        "bucket_limits": _bucket_limits(),
    }
    context["models"] = context["stats"]["models"]
    return render(request, "dashboard.html", context)


@login_required
def results(request: HttpRequest) -> HttpResponse:
    config = routing_config.get()
    monitored = sorted(m.model_id for m in config.models.values() if m.monitor and m.kind == "chat")
    context = {
        "models": monitored,
        "providers": sorted(config.providers),
        "buckets": _buckets(),
        "since_choices": SINCE_CHOICES,
        "page_size": PAGE_SIZE,
    }
    return render(request, "results.html", context)


# How often the status page reloads itself (with JavaScript on).
STATUS_POLL_SECONDS = 60


@cache_control(public=True, max_age=30)
def status_page(request: HttpRequest) -> HttpResponse:
    """``/status/``: public, no login; what a customer is pointed at."""
    context = selectors.status_page(now=timezone.now())
    context["poll_seconds"] = STATUS_POLL_SECONDS
    context["states"] = [state.value for state in State]
    return render(request, "status.html", context)
