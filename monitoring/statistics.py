"""Availability, percentiles and the time arithmetic of roll-ups and retention.

Availability = successes / (successes + errors) × 100, where a 429 (rate limited) counts as neither: the
provider refused us, which says nothing about whether the model works. Percentiles interpolate linearly
between the closest ranks (numpy's default), over successful probes only.

Raw probes are pruned in whole hours: everything before ``raw_cut(now)`` (the start of the hour
``MONITORING_RAW_RETENTION_DAYS`` ago) may be gone, everything from it on is still there. A window of
time is therefore counted from raw probes from the cut on and from hourly roll-ups before it, so no
probe is counted twice or lost.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, Sum

from .models import Probe, Rollup

RATE_LIMITED = Q(http_status=429) | Q(error_type="rate_limited")
# Availability windows: the API's key and its length.
WINDOWS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
# The percentiles of the statistics cover this much time.
PERCENTILE_WINDOW = timedelta(hours=24)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, interpolated linearly; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return round(value, 3)


def availability(successes: int, errors: int) -> float | None:
    """Percent (0..100, two decimals) of successes among successes and errors; None without data."""
    total = successes + errors
    return None if total == 0 else round(100.0 * successes / total, 2)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def raw_cut(now: datetime) -> datetime:
    """Raw probes from this moment on are kept; older ones live on in the roll-ups."""
    return floor_hour(now - timedelta(days=settings.MONITORING_RAW_RETENTION_DAYS))


def first_full_day(moment: datetime) -> datetime:
    day = floor_day(moment)
    return day if day == moment else day + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Summary:
    probes: int
    successes: int
    errors: int
    rate_limited: int
    p50_ttfb_ms: float | None
    p95_ttfb_ms: float | None
    p50_total_ms: float | None
    p95_total_ms: float | None
    p50_tokens_per_sec: float | None
    p95_tokens_per_sec: float | None
    energy_wh: float


def summarize(probes: Iterable[Probe]) -> Summary:
    """Counts, percentiles (of successes) and energy of some probes."""
    count = successes = errors = rate_limited = 0
    ttfb: list[float] = []
    total: list[float] = []
    tps: list[float] = []
    energy = 0.0
    for probe in probes:
        count += 1
        energy += probe.energy_wh or 0.0
        if probe.ok:
            successes += 1
            if probe.ttfb_ms is not None:
                ttfb.append(probe.ttfb_ms)
            if probe.total_ms is not None:
                total.append(probe.total_ms)
            if probe.tokens_per_sec is not None:
                tps.append(probe.tokens_per_sec)
        elif probe.rate_limited:
            rate_limited += 1
        else:
            errors += 1
    return Summary(
        probes=count,
        successes=successes,
        errors=errors,
        rate_limited=rate_limited,
        p50_ttfb_ms=percentile(ttfb, 0.5),
        p95_ttfb_ms=percentile(ttfb, 0.95),
        p50_total_ms=percentile(total, 0.5),
        p95_total_ms=percentile(total, 0.95),
        p50_tokens_per_sec=percentile(tps, 0.5),
        p95_tokens_per_sec=percentile(tps, 0.95),
        energy_wh=round(energy, 9),
    )


def window_counts(model_pks: Sequence[int], start: datetime, now: datetime) -> dict[int, tuple[int, int]]:
    """(successes, errors without 429s) per model for probes started in [start, now]."""
    cut = raw_cut(now)
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    raw = (
        Probe.objects.filter(model_id__in=model_pks, checked_at__gte=max(start, cut), checked_at__lte=now)
        .values("model_id")
        .annotate(
            successes=Count("id", filter=Q(ok=True)),
            errors=Count("id", filter=Q(ok=False) & ~RATE_LIMITED),
        )
    )
    for row in raw:
        counts[row["model_id"]][0] += row["successes"]
        counts[row["model_id"]][1] += row["errors"]
    if start < cut:
        rolled = (
            Rollup.objects.filter(
                model_id__in=model_pks, period=Rollup.Period.HOUR, start__gte=floor_hour(start), start__lt=cut
            )
            .values("model_id")
            .annotate(successes=Sum("successes"), errors=Sum("errors"))
        )
        for row in rolled:
            counts[row["model_id"]][0] += row["successes"] or 0
            counts[row["model_id"]][1] += row["errors"] or 0
    return {pk: (value[0], value[1]) for pk, value in counts.items()}


def availabilities(model_pks: Sequence[int], now: datetime) -> dict[int, dict[str, float | None]]:
    """Availability per model over every window (1h, 24h, 7d, 30d)."""
    result: dict[int, dict[str, float | None]] = {pk: {} for pk in model_pks}
    for name, length in WINDOWS.items():
        counts = window_counts(model_pks, now - length, now)
        for pk in model_pks:
            successes, errors = counts.get(pk, (0, 0))
            result[pk][name] = availability(successes, errors)
    return result


def recent_summaries(model_pks: Sequence[int], now: datetime) -> dict[int, Summary]:
    """Percentiles (and counts) per model over the last ``PERCENTILE_WINDOW``."""
    probes: dict[int, list[Probe]] = defaultdict(list)
    rows = Probe.objects.filter(
        model_id__in=model_pks, checked_at__gte=now - PERCENTILE_WINDOW, checked_at__lte=now
    ).only("model_id", "ok", "http_status", "error_type", "ttfb_ms", "total_ms", "tokens_per_sec", "energy_wh")
    for probe in rows:
        probes[probe.model_id].append(probe)
    return {pk: summarize(probes.get(pk, [])) for pk in model_pks}


@dataclass(frozen=True, slots=True)
class Day:
    """One cell of an uptime bar: a UTC day and its availability (None: no probe that counts)."""

    day: datetime
    availability: float | None
    probes: int


def daily_availability(model_pks: Sequence[int], now: datetime, days: int) -> dict[int, list[Day]]:
    """Each model's last ``days`` days, oldest first (today so far included): from the daily roll-ups, and
    from the raw probes for today, which is rolled up only once it is over."""
    today = floor_day(now)
    first = today - timedelta(days=days - 1)
    counts: dict[tuple[int, datetime], tuple[int, int, int]] = {}
    for rollup in Rollup.objects.filter(
        model_id__in=model_pks, period=Rollup.Period.DAY, start__gte=first, start__lt=today
    ).only("model_id", "start", "successes", "errors", "probes"):
        counts[(rollup.model_id, rollup.start)] = (rollup.successes, rollup.errors, rollup.probes)
    for row in (
        Probe.objects.filter(model_id__in=model_pks, checked_at__gte=today, checked_at__lte=now)
        .values("model_id")
        .annotate(
            successes=Count("id", filter=Q(ok=True)),
            errors=Count("id", filter=Q(ok=False) & ~RATE_LIMITED),
            probes=Count("id"),
        )
    ):
        counts[(row["model_id"], today)] = (row["successes"], row["errors"], row["probes"])
    result: dict[int, list[Day]] = {}
    for pk in model_pks:
        cells = []
        for offset in range(days):
            day = first + timedelta(days=offset)
            successes, errors, probes = counts.get((pk, day), (0, 0, 0))
            cells.append(Day(day=day, availability=availability(successes, errors), probes=probes))
        result[pk] = cells
    return result
