"""Availability (429s excluded), percentiles, roll-ups and pruning, from probe rows and an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring import services, statistics
from monitoring.models import ModelStats, Rollup
from routing.models import LLMModel
from tests.fixtures import Fake

from .factories import NOW, demo, make_probe

pytestmark = pytest.mark.django_db(transaction=True)

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def limited(model: LLMModel, at: datetime) -> None:
    make_probe(model, at, status="unknown", http_status=429, error_type="rate_limited", error="Too Many Requests")


def test_percentile_interpolates_between_ranks() -> None:
    assert statistics.percentile([], 0.5) is None
    assert statistics.percentile([7.0], 0.95) == 7.0
    assert statistics.percentile([400.0, 100.0, 1000.0, 300.0, 200.0], 0.5) == 300.0
    # Position 0.95 x 4 = 3.8: 400 + 0.8 x (1000 - 400).
    assert statistics.percentile([400.0, 100.0, 1000.0, 300.0, 200.0], 0.95) == 880.0


def test_availability_excludes_429s_in_every_window(monitored: Fake) -> None:
    fast = demo("demo-fast")
    # Last hour: 3 successes, 1 error, 2 rate limited.
    for minutes in (5, 10, 15):
        make_probe(fast, NOW - minutes * MINUTE)
    make_probe(fast, NOW - 20 * MINUTE, status="unknown")
    limited(fast, NOW - 25 * MINUTE)
    limited(fast, NOW - 30 * MINUTE)
    # Earlier in the last 24 h: 5 successes (some slow), 3 errors, 1 rate limited.
    for hours, status in ((2, "smooth"), (3, "available"), (4, "congestion"), (5, "lagging"), (6, "smooth")):
        make_probe(fast, NOW - hours * HOUR, status=status)
    for hours in (7, 8, 9):
        make_probe(fast, NOW - hours * HOUR, status="unknown", http_status=None, error_type="timeout")
    limited(fast, NOW - 10 * HOUR)
    # Earlier in the last 7 days: 4 successes.
    for days in (2, 3, 4, 5):
        make_probe(fast, NOW - days * DAY)
    # Older than the raw retention: only its hourly roll-up counts (4 successes, 4 errors), once.
    old_hour = statistics.floor_hour(NOW - 10 * DAY)
    Rollup.objects.create(model=fast, period="hour", start=old_hour, probes=9, successes=4, errors=4, rate_limited=1)
    make_probe(fast, old_hour + MINUTE)  # not pruned yet, and already in the roll-up
    Rollup.objects.create(model=fast, period="day", start=statistics.floor_day(NOW - 10 * DAY), successes=50)
    Rollup.objects.create(model=fast, period="hour", start=statistics.floor_hour(NOW - 40 * DAY), errors=9)
    # Not yet happened at NOW.
    make_probe(fast, NOW + MINUTE, status="unknown")
    # A model that was only ever rate limited has no availability at all.
    smart = demo("demo-smart")
    limited(smart, NOW - 5 * MINUTE)

    assert services.stats_refresh(now=NOW) == 2

    stats = ModelStats.objects.get(model=fast)
    assert stats.availability_1h == 75.0  # 3 / 4
    assert stats.availability_24h == 66.67  # 8 / 12
    assert stats.availability_7d == 75.0  # 12 / 16
    assert stats.availability_30d == 66.67  # 16 / 24
    assert stats.refreshed_at == NOW
    smart_stats = ModelStats.objects.get(model=smart)
    assert (
        smart_stats.availability_1h,
        smart_stats.availability_24h,
        smart_stats.availability_7d,
        smart_stats.availability_30d,
    ) == (None, None, None, None)


def test_percentiles_cover_the_successes_of_the_last_24_hours(monitored: Fake) -> None:
    fast = demo("demo-fast")
    for i, total in enumerate((400.0, 100.0, 1000.0, 300.0, 200.0)):
        make_probe(fast, NOW - (i + 1) * HOUR, total_ms=total, ttfb_ms=total / 10, tokens_per_sec=total / 100)
    make_probe(fast, NOW - 2 * MINUTE, status="unknown", total_ms=120_000.0)  # an error: no latency
    make_probe(fast, NOW - 25 * HOUR, total_ms=99_999.0)  # too old
    make_probe(fast, NOW - HOUR, ok=True, status="smooth", ttfb_ms=None, tokens_per_sec=None, total_ms=300.0)

    services.stats_refresh(now=NOW)

    stats = ModelStats.objects.get(model=fast)
    # total_ms: 100, 200, 300, 300, 400, 1000 -> p50 300, p95 at position 4.75 = 400 + 0.75 x 600.
    assert (stats.p50_total_ms, stats.p95_total_ms) == (300.0, 850.0)
    # ttfb: 10, 20, 30, 40, 100 (the probe without a first token has none).
    assert (stats.p50_ttfb_ms, stats.p95_ttfb_ms) == (30.0, 88.0)
    assert (stats.p50_tokens_per_sec, stats.p95_tokens_per_sec) == (3.0, 8.8)


def test_roll_ups_are_written_once_per_finished_hour_and_day_and_then_pruning_keeps_them(monitored: Fake) -> None:
    fast = demo("demo-fast")
    cut = statistics.raw_cut(NOW)
    assert cut == datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    h1 = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
    h2 = datetime(2026, 11, 16, 11, 0, tzinfo=UTC)
    make_probe(fast, h1 + 5 * MINUTE, total_ms=100.0)
    make_probe(fast, h1 + 15 * MINUTE, status="unknown")
    make_probe(fast, h2 + 5 * MINUTE, total_ms=300.0, energy_wh=0.002)
    limited(fast, h2 + 15 * MINUTE)
    day = datetime(2026, 11, 22, tzinfo=UTC)
    make_probe(fast, day + 10 * MINUTE)
    make_probe(fast, day + 20 * MINUTE, status="unknown")
    make_probe(fast, day + 13 * HOUR)
    make_probe(fast, NOW - 25 * MINUTE)  # this hour is not finished: not rolled up yet

    # Hours h1, h2, 2026-11-22 00:00 and 13:00; the day 2026-11-22 (2026-11-16 started before the cut).
    assert services.rollups_update(now=NOW) == 5
    assert services.rollups_update(now=NOW) == 0
    hours = {r.start: r for r in Rollup.objects.filter(period="hour")}
    assert sorted(hours) == [h1, h2, day, day + 13 * HOUR]
    assert (hours[h1].probes, hours[h1].successes, hours[h1].errors, hours[h1].rate_limited) == (2, 1, 1, 0)
    assert (hours[h2].probes, hours[h2].successes, hours[h2].errors, hours[h2].rate_limited) == (2, 1, 0, 1)
    assert (hours[h1].p50_total_ms, hours[h2].p50_total_ms, hours[h2].energy_wh) == (100.0, 300.0, 0.002)
    [daily] = Rollup.objects.filter(period="day")
    assert (daily.start, daily.probes, daily.successes, daily.errors) == (day, 3, 2, 1)

    # A probe stored late into h2 is counted on the next update.
    make_probe(fast, h2 + 30 * MINUTE)
    assert services.rollups_update(now=NOW) == 1
    assert Rollup.objects.get(period="hour", start=h2).successes == 2

    Rollup.objects.create(model=fast, period="day", start=NOW - 400 * DAY, probes=1, successes=1)
    Rollup.objects.create(model=fast, period="hour", start=NOW - 300 * DAY, probes=1, successes=1)

    later = NOW + 2 * DAY  # the cut moves to 2026-11-18 09:00
    assert services.prune(now=later) == {
        "rollups_written": 2,
        "probes_deleted": 5,
        "rollups_deleted": 1,
        "latency_rollups_deleted": 0,
    }
    assert sorted(p.checked_at for p in fast.probes.all()) == [
        day + 10 * MINUTE,
        day + 20 * MINUTE,
        day + 13 * HOUR,
        NOW - 25 * MINUTE,
    ]
    assert Rollup.objects.count() == 5 + 1 + 2  # one old roll-up gone, the 2026-11-23 09:00 hour and day added
    assert Rollup.objects.filter(period="day", start=datetime(2026, 11, 23, tzinfo=UTC)).get().probes == 1

    # Nothing was lost: 30-day availability still sees h1 and h2 through their roll-ups.
    services.stats_refresh(now=later)
    # h1: 1 ok 1 error; h2: 2 ok (429 excluded); 2026-11-22: 2 ok 1 error; 2026-11-23: 1 ok -> 6 / 8.
    assert ModelStats.objects.get(model=fast).availability_30d == 75.0
    assert services.prune(now=later) == {
        "rollups_written": 0,
        "probes_deleted": 0,
        "rollups_deleted": 0,
        "latency_rollups_deleted": 0,
    }
