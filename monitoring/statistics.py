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
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, Sum

from . import percentiles
from .models import LatencyRollup, Probe, ProbeKind, Rollup

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
# The windows of the merged percentiles (probes and traffic), from the hourly latency roll-ups.
LATENCY_WINDOWS: dict[str, timedelta] = {"1h": WINDOWS["1h"], "24h": WINDOWS["24h"], "7d": WINDOWS["7d"]}
# The latency roll-ups are kept this long: the longest window, its partial first hour and a day of slack.
LATENCY_RETENTION = timedelta(days=8)


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
        Probe.objects.filter(
            model_id__in=model_pks, kind=ProbeKind.STREAM, checked_at__gte=max(start, cut), checked_at__lte=now
        )
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


# The probe kinds that check an answer, whose validity rate the statistics show.
VALIDITY_KINDS = (ProbeKind.TOOL_CALL.value, ProbeKind.STRUCTURED_OUTPUT.value)


def validity_rates(model_pks: Sequence[int], now: datetime) -> dict[int, dict[str, float | None]]:
    """Percent of valid answers per answer-checking kind and model over the last 24 h; like availability,
    a 429 counts as neither valid nor invalid, and None means no such probe."""
    rows = (
        Probe.objects.filter(
            model_id__in=model_pks, kind__in=VALIDITY_KINDS, checked_at__gte=now - WINDOWS["24h"], checked_at__lte=now
        )
        .values("model_id", "kind")
        .annotate(valid=Count("id", filter=Q(ok=True)), invalid=Count("id", filter=Q(ok=False) & ~RATE_LIMITED))
    )
    rates: dict[int, dict[str, float | None]] = {pk: dict.fromkeys(VALIDITY_KINDS) for pk in model_pks}
    for row in rows:
        rates[row["model_id"]][row["kind"]] = availability(row["valid"], row["invalid"])
    return rates


def recent_summaries(model_pks: Sequence[int], now: datetime) -> dict[int, Summary]:
    """Percentiles (and counts) per model over the last ``PERCENTILE_WINDOW``."""
    probes: dict[int, list[Probe]] = defaultdict(list)
    rows = Probe.objects.filter(
        model_id__in=model_pks, kind=ProbeKind.STREAM, checked_at__gte=now - PERCENTILE_WINDOW, checked_at__lte=now
    ).only("model_id", "ok", "http_status", "error_type", "ttfb_ms", "total_ms", "tokens_per_sec", "energy_wh")
    for probe in rows:
        probes[probe.model_id].append(probe)
    return {pk: summarize(probes.get(pk, [])) for pk in model_pks}


@dataclass(frozen=True, slots=True)
class LatencyWindow:
    """One model's latency over one window: the hourly histograms of both sources added together."""

    window: str
    samples_by_source: dict[str, int]
    newest_at: datetime | None
    ttft_ms: percentiles.Histogram
    total_ms: percentiles.Histogram
    tokens_per_sec: percentiles.Histogram

    @classmethod
    def empty(cls, window: str) -> LatencyWindow:
        by_source = {source.value: 0 for source in LatencyRollup.Source}
        return cls(window, by_source, None, {}, {}, {})

    @property
    def samples(self) -> int:
        return sum(self.samples_by_source.values())

    @property
    def source(self) -> str | None:
        """Which sources gave samples: ``both``, ``probes``, ``traffic``, or None without any."""
        present = [name for name, count in self.samples_by_source.items() if count]
        return "both" if len(present) == 2 else (present[0] if present else None)

    def payload(self) -> dict[str, object]:
        """The ``percentiles`` object of the status API (``newest_at`` is the freshness: ISO 8601, UTC)."""
        return {
            "window": self.window,
            "source": self.source,
            "samples": self.samples,
            "samples_by_source": dict(self.samples_by_source),
            "newest_at": iso(self.newest_at),
            "ttft_ms": percentiles.quantiles(self.ttft_ms),
            "total_ms": percentiles.quantiles(self.total_ms),
            "tokens_per_sec": percentiles.quantiles(self.tokens_per_sec),
        }


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def latency_window_start(window: str, now: datetime) -> datetime:
    """Windows are whole hours: the one holding ``now − length`` through the current one (so "1h" covers
    between 60 and 120 minutes). A sample is in one hour, so none is counted twice."""
    return floor_hour(now - LATENCY_WINDOWS[window])


def latency_windows(model_ids: Sequence[str] | None, window: str, now: datetime) -> dict[str, LatencyWindow]:
    """Each model's merged latency over ``window`` (one of ``LATENCY_WINDOWS``), from the hourly roll-ups;
    ``model_ids`` None: every model with samples in the window.

    At most 2 x 169 small rows a model, however much traffic there was.
    """
    rows = LatencyRollup.objects.filter(hour__gte=latency_window_start(window, now), hour__lte=now).only(
        "model", "source", "samples", "newest_at", "ttft_ms", "total_ms", "tokens_per_sec"
    )
    if model_ids is not None:
        rows = rows.filter(model__in=model_ids)
    grouped: dict[str, list[LatencyRollup]] = defaultdict(list)
    for row in rows:
        grouped[row.model].append(row)
    result = {}
    for model_id in sorted(grouped) if model_ids is None else model_ids:
        hours = grouped.get(model_id, [])
        by_source = {source.value: 0 for source in LatencyRollup.Source}
        for row in hours:
            by_source[row.source] += row.samples
        newest = [row.newest_at for row in hours if row.newest_at is not None]
        result[model_id] = LatencyWindow(
            window=window,
            samples_by_source=by_source,
            newest_at=max(newest) if newest else None,
            ttft_ms=percentiles.merge(row.ttft_ms for row in hours),
            total_ms=percentiles.merge(row.total_ms for row in hours),
            tokens_per_sec=percentiles.merge(row.tokens_per_sec for row in hours),
        )
    return result


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
        Probe.objects.filter(model_id__in=model_pks, kind=ProbeKind.STREAM, checked_at__gte=today, checked_at__lte=now)
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
