"""Percentiles of TTFT, total time and tokens/s from probes and traffic: the histogram's error bound, the
windows, the sources, freshness, and the figures handed to latency routing, with an injected clock."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from ledger.models import UsageRecord
from monitoring import percentiles, selectors, services, statistics, tasks
from monitoring.models import LatencyRollup, ModelStats, Probe
from routing.selectors import LatencyFigure, load_latency_figures
from tests.fixtures import Fake

from .factories import NOW, demo, make_probe

pytestmark = pytest.mark.django_db(transaction=True)

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def request(model: str, at: datetime, **fields: Any) -> UsageRecord:
    """A usage record of the gateway: a successful streamed chat request unless told otherwise."""
    values: dict[str, Any] = {
        "request_id": f"req-{at.timestamp()}",
        "endpoint": "chat.completions",
        "model": model,
        "provider": model.partition("/")[0],
        "stream": True,
        "ttft_ms": 100.0,
        "latency_ms": 500.0,
        "tokens_per_sec": 40.0,
        "created_at": at,
        **fields,
    }
    return UsageRecord.objects.create(**values)


def binned(value: float) -> float:
    """What the histogram reports for a sample: its bin's value, rounded as the API rounds it."""
    return round(percentiles.bin_value(math.ceil(math.log(value) / percentiles.LN_GAMMA)), 2)


def stored(model: str, window: str) -> dict[str, Any]:
    return dict(ModelStats.objects.get(model=demo(model)).percentiles[window])


# --- the histogram ------------------------------------------------------------------------------------------


def test_a_histogram_merges_by_adding_counts_and_reports_the_nearest_rank() -> None:
    hour_1 = {"10": 2, "20": 1}
    hour_2 = {"20": 3, "-5": 1}

    merged = percentiles.merge([hour_1, hour_2])

    assert merged == {"10": 2, "20": 4, "-5": 1}
    # 7 samples: rank ceil(0.5 x 7) = 4 is in bin 20 (after -5 and the two of 10); rank 1 in bin -5.
    assert percentiles.quantile(merged, 0.5) == round(percentiles.bin_value(20), 2)
    assert percentiles.quantile(merged, 0.01) == round(percentiles.bin_value(-5), 2)
    assert percentiles.quantiles({}) == {"p50": None, "p95": None, "p99": None}


def test_every_bin_reports_within_one_percent_of_the_values_it_holds() -> None:
    for index in (-300, -1, 0, 1, 250, 700):
        low, high = percentiles.GAMMA ** (index - 1), percentiles.GAMMA**index
        reported = percentiles.bin_value(index)
        assert abs(reported - low) <= percentiles.ALPHA * low * (1 + 1e-12)
        assert abs(reported - high) <= percentiles.ALPHA * high * (1 + 1e-12)


# --- the figures from probes and traffic -------------------------------------------------------------------

# Twenty TTFTs (ms), sorted: by nearest rank p50 is the 10th (200), p95 the 19th (1200), p99 the 20th (4000).
TTFTS = [80, 95, 100, 110, 120, 130, 150, 160, 180, 200, 220, 250, 300, 350, 400, 500, 650, 800, 1200, 4000]
EXACT = {"p50": 200.0, "p95": 1200.0, "p99": 4000.0}


def test_percentiles_of_a_hand_computed_set_are_within_the_stated_bound(monitored: Fake) -> None:
    fast = demo("demo-fast")
    # Spread over three hours and both sources: the hours' histograms are merged to answer.
    for i, ttft in enumerate(TTFTS):
        at = NOW - (i % 3) * HOUR - (i + 1) * MINUTE
        if i % 2:
            make_probe(fast, at, ttfb_ms=float(ttft), total_ms=float(ttft) * 4, tokens_per_sec=10.0 + i)
        else:
            request("demo/demo-fast", at, ttft_ms=float(ttft), latency_ms=float(ttft) * 4, tokens_per_sec=10.0 + i)

    services.stats_refresh(now=NOW)
    figures = stored("demo-fast", "24h")

    assert figures["ttft_ms"] == {name: binned(value) for name, value in EXACT.items()}
    for name, exact in EXACT.items():
        assert abs(figures["ttft_ms"][name] - exact) <= percentiles.ALPHA * exact + 0.005
    assert figures["total_ms"] == {name: binned(value * 4) for name, value in EXACT.items()}
    # tokens/s 10..29: the 10th is 19, the 19th 28, the 20th 29.
    assert figures["tokens_per_sec"] == {"p50": binned(19.0), "p95": binned(28.0), "p99": binned(29.0)}
    assert (figures["samples"], figures["samples_by_source"], figures["source"]) == (
        20,
        {"probes": 10, "traffic": 10},
        "both",
    )


def test_each_window_counts_the_whole_hours_it_reaches_back_to(monitored: Fake) -> None:
    fast = demo("demo-fast")
    make_probe(fast, NOW - 10 * MINUTE, ttfb_ms=100.0)  # 09:20
    make_probe(fast, NOW - 80 * MINUTE, ttfb_ms=110.0)  # 08:10: the hour 1 h ago reached into, so in "1h"
    request("demo/demo-fast", NOW - 100 * MINUTE, ttft_ms=120.0)  # 07:50
    request("demo/demo-fast", NOW - 3 * DAY, ttft_ms=130.0)
    make_probe(fast, NOW - 8 * DAY, ttfb_ms=140.0)  # older than every window
    make_probe(fast, NOW + MINUTE, ttfb_ms=150.0)  # not yet happened at NOW

    services.stats_refresh(now=NOW)

    counts = {
        w: (stored("demo-fast", w)["samples"], stored("demo-fast", w)["ttft_ms"]["p99"]) for w in ("1h", "24h", "7d")
    }
    assert counts == {"1h": (2, binned(110.0)), "24h": (3, binned(120.0)), "7d": (4, binned(130.0))}
    assert statistics.latency_window_start("1h", NOW) == datetime(2026, 11, 23, 8, 0, tzinfo=NOW.tzinfo)


def test_only_successful_generations_count_and_the_source_is_named(monitored: Fake) -> None:
    fast = demo("demo-fast")
    make_probe(fast, NOW - 5 * MINUTE, ttfb_ms=100.0)
    make_probe(fast, NOW - 6 * MINUTE, status="unknown")  # failed: no sample
    make_probe(fast, NOW - 7 * MINUTE, status="unknown", http_status=429, error_type="rate_limited")
    request("demo/demo-smart", NOW - 5 * MINUTE, ttft_ms=200.0)
    request("demo/demo-smart", NOW - 6 * MINUTE, status="error", error_code="upstream_error", ttft_ms=9000.0)
    request("demo/demo-smart", NOW - 7 * MINUTE, endpoint="embeddings", stream=False, ttft_ms=None, latency_ms=9.0)
    # A request that was not streamed has a total time but no TTFT nor tokens/s.
    request("demo/demo-smart", NOW - 8 * MINUTE, stream=False, ttft_ms=None, latency_ms=800.0, tokens_per_sec=None)

    services.stats_refresh(now=NOW)
    probed, served = stored("demo-fast", "1h"), stored("demo-smart", "1h")

    assert (probed["source"], probed["samples_by_source"]) == ("probes", {"probes": 1, "traffic": 0})
    assert probed["ttft_ms"]["p99"] == binned(100.0)
    assert (served["source"], served["samples_by_source"]) == ("traffic", {"probes": 0, "traffic": 2})
    assert served["ttft_ms"] == {"p50": binned(200.0), "p95": binned(200.0), "p99": binned(200.0)}
    assert served["total_ms"] == {"p50": binned(500.0), "p95": binned(800.0), "p99": binned(800.0)}


def test_freshness_is_the_newest_sample_of_either_source(monitored: Fake) -> None:
    fast = demo("demo-fast")
    make_probe(fast, NOW - 20 * MINUTE)
    request("demo/demo-fast", NOW - 4 * MINUTE)
    make_probe(demo("demo-smart"), NOW - 2 * DAY)

    services.stats_refresh(now=NOW)

    assert stored("demo-fast", "1h")["newest_at"] == "2026-11-23T09:26:00Z"
    assert stored("demo-smart", "7d")["newest_at"] == "2026-11-21T09:30:00Z"
    assert stored("demo-smart", "24h")["newest_at"] is None


def test_the_rollups_outlive_the_raw_samples_and_a_refresh_redoes_only_recent_hours(monitored: Fake) -> None:
    fast = demo("demo-fast")
    make_probe(fast, NOW - 2 * DAY, ttfb_ms=300.0)
    make_probe(fast, NOW - 5 * MINUTE, ttfb_ms=100.0)
    services.stats_refresh(now=NOW)  # the first refresh of every model reaches back over the longest window
    before = stored("demo-fast", "7d")

    Probe.objects.filter(checked_at__lt=NOW - DAY).delete()  # pruned
    make_probe(fast, NOW - 4 * MINUTE, ttfb_ms=100.0)
    services.stats_refresh(now=NOW)
    after = stored("demo-fast", "7d")

    assert before["samples"] == 2 and before["ttft_ms"]["p99"] == binned(300.0)
    assert after["samples"] == 3 and after["ttft_ms"]["p99"] == binned(300.0)
    assert LatencyRollup.objects.filter(model="demo/demo-fast", source="probes").count() == 2


def test_prune_drops_latency_rollups_past_the_longest_window(monitored: Fake) -> None:
    LatencyRollup.objects.create(model="demo/demo-fast", source="traffic", hour=statistics.floor_hour(NOW - 9 * DAY))
    LatencyRollup.objects.create(model="demo/demo-fast", source="traffic", hour=statistics.floor_hour(NOW - 7 * DAY))

    assert services.prune(now=NOW)["latency_rollups_deleted"] == 1
    assert LatencyRollup.objects.get().hour == statistics.floor_hour(NOW - 7 * DAY)


# --- the seam for latency routing ---------------------------------------------------------------------------


def test_latency_figures_give_each_models_recent_median_ttft(monitored: Fake) -> None:
    fast = demo("demo-fast")
    for minutes, ttft in ((5, 100.0), (6, 300.0), (7, 200.0)):
        make_probe(fast, NOW - minutes * MINUTE, ttfb_ms=ttft)
    request("demo/demo-fast", NOW - 3 * MINUTE, stream=False, ttft_ms=None)  # no TTFT: not a TTFT sample
    request("demo/demo-smart", NOW - 3 * HOUR, ttft_ms=50.0)  # outside the hour
    request("other/model", NOW - 2 * MINUTE, ttft_ms=70.0)  # traffic of a model the monitor does not probe
    services.latency_rollups_refresh(now=NOW)

    figures = selectors.latency_figures("1h", now=NOW)

    assert figures == {
        "demo/demo-fast": LatencyFigure(p50_ttft_ms=binned(200.0), samples=3, measured_at=NOW - 3 * MINUTE),
        "other/model": LatencyFigure(p50_ttft_ms=binned(70.0), samples=1, measured_at=NOW - 2 * MINUTE),
    }


def test_the_periodic_refresh_publishes_the_latency_figures_to_routing(monitored: Fake) -> None:
    checked_at = timezone.now() - 5 * MINUTE
    make_probe(demo("demo-fast"), checked_at)

    assert tasks.refresh_stats() == 2

    assert load_latency_figures() == {
        "demo/demo-fast": LatencyFigure(p50_ttft_ms=binned(100.0), samples=1, measured_at=checked_at)
    }
