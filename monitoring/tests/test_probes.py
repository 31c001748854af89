"""Probes against the fake upstream over real HTTP: each bucket, the timings, and how errors are recorded.

The slow buckets (35-100 s) come from a fake configured a few seconds slow, measured by the prober with
an injected clock that runs 20 times faster than real time, so no test waits a minute and a half.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from pytest_django import Settings

from ledger.accounting import account
from ledger.models import UsageRecord
from llm.tokens import count_message_tokens
from monitoring.models import ModelStats, Probe
from monitoring.services import probe_run
from routing.models import LLMModel
from routing.selectors import routing_config
from routing.services import routing_changed
from tests.fixtures import Fake

from .factories import NOW, add_model, demo

pytestmark = pytest.mark.django_db(transaction=True)

SPEED_UP = 20.0


def fast_clock() -> float:
    """Monotonic seconds, 20 times faster: a real 2 s wait measures 40 s."""
    return time.monotonic() * SPEED_UP


def probe(*models: LLMModel, clock: Callable[[], float] = time.monotonic) -> dict[str, Probe]:
    """The streaming probe of each model, by name (the demo models get a tool-call and a JSON-schema one too)."""
    rows = probe_run(model_pks=[m.pk for m in models], clock=clock, now=lambda: NOW)
    return {row.model.name: row for row in rows if row.kind == "stream"}


def only_the_plain_probe(model: LLMModel) -> None:
    LLMModel.objects.filter(pk=model.pk).update(supports_tools=False, supports_structured_output=False)
    routing_changed()


def test_it_classifies_each_bucket_from_the_fakes_latency(monitored: Fake) -> None:
    # Real delays x 20 as measured: 0 s, 16 s, 37 s, 60 s and 104 s.
    delays = {"smooth": 0, "available": 800, "congestion": 1850, "lagging": 3000, "too-slow": 5200}
    models = [add_model(f"bucket-{name}") for name in delays]
    monitored.configure(**{f"bucket-{name}": {"latency_ms": ms, "tokens": 4} for name, ms in delays.items()})

    rows = probe(*models, clock=fast_clock)

    assert {name: rows[f"bucket-{name}"].status for name in delays} == {
        "smooth": "smooth",
        "available": "available",
        "congestion": "congestion",
        "lagging": "lagging",
        "too-slow": "unknown",
    }
    for name, ms in delays.items():
        row = rows[f"bucket-{name}"]
        assert row.ok is True, row.error
        assert (row.http_status, row.error_type, row.completion_tokens) == (200, "", 4)
        assert row.total_ms is not None and row.total_ms >= ms * SPEED_UP
        assert row.ttfb_ms is not None and ms * SPEED_UP <= row.ttfb_ms <= row.total_ms
        assert row.checked_at == NOW
    # A slow success is still a success: unknown because of its time, not an error.
    assert rows["bucket-too-slow"].error == ""


def test_it_measures_ttfb_tokens_per_second_tokens_and_energy(monitored: Fake, settings: Settings) -> None:
    monitored.configure(**{"demo-fast": {"ttft_ms": 150, "tps": 20, "tokens": 6}})
    only_the_plain_probe(demo("demo-fast"))

    row = probe(demo("demo-fast"))["demo-fast"]

    assert (row.ok, row.status, row.http_status) == (True, "smooth", 200)
    prompt = settings.MONITORING_PROBE_PROMPT
    assert row.prompt_tokens == count_message_tokens([{"role": "user", "content": prompt}])
    assert row.completion_tokens == 6
    assert row.ttfb_ms is not None and 150 <= row.ttfb_ms < 1000
    # The upstream sends the first token after 150 ms and five more 50 ms apart, so the last one cannot
    # arrive before 400 ms. A late first token shortens the measured decode window, so tokens/s is checked
    # against the readings it comes from (five tokens over total - ttfb) and a generous band around 20.
    assert row.total_ms is not None and row.total_ms >= 150 + 5 * 50
    assert row.tokens_per_sec is not None and 10 <= row.tokens_per_sec <= 30
    assert row.tokens_per_sec == pytest.approx(5 / ((row.total_ms - row.ttfb_ms) / 1000), rel=0.01)
    # Energy and cost as the gateway accounts a call of the same tokens ($0.10 / $0.40 per million in / out).
    expected = account(routing_config.get().models["demo/demo-fast"], row.prompt_tokens, 6)
    assert row.energy_wh is not None and row.energy_wh > 0
    assert (row.energy_wh, row.cost_usd) == (expected.energy_wh, expected.cost_usd)
    assert row.cost_usd == pytest.approx((row.prompt_tokens * 0.10 + 6 * 0.40) / 1e6, abs=1e-15)
    assert monitored.stats()["requests"] == {"demo-fast": 1}
    body = monitored.stats()["last"]["demo-fast"]  # type: ignore[index]  # the fake's stats are JSON: object
    assert body["stream"] is True and body["max_tokens"] == settings.MONITORING_PROBE_MAX_TOKENS


def test_it_records_errors_with_their_class_and_status_never_a_zero_time(monitored: Fake) -> None:
    cases = {
        "fails-503": ({"status": 503}, "upstream_error", 503),
        "fails-500": ({"status": 500}, "upstream_error", 500),
        "limited": ({"status": 429, "retry_after": 3}, "rate_limited", 429),
        "no-auth": ({"status": 401}, "authentication_error", 401),
        "breaks-midway": ({"tokens": 8, "error_after": 2}, None, None),
    }
    models = [add_model(name) for name in cases]
    monitored.configure(**{name: knobs for name, (knobs, _, _) in cases.items()})

    rows = probe(*models)

    for name, (_, code, status) in cases.items():
        row = rows[name]
        assert (row.ok, row.status, row.ttfb_ms, row.tokens_per_sec) == (False, "unknown", None, None), name
        assert row.total_ms is not None and row.total_ms > 0, name
        assert (row.prompt_tokens, row.completion_tokens, row.energy_wh) == (None, None, None), name
        assert row.error, name
        if code is not None:
            assert (row.error_type, row.http_status) == (code, status), name
    assert rows["breaks-midway"].error_type != ""
    assert "sk-" not in "".join(r.error for r in rows.values())


def test_a_hanging_model_times_out_as_an_error(monitored: Fake, settings: Settings) -> None:
    settings.MONITORING_PROBE_TIMEOUT_S = 0.5
    hanging = add_model("hangs")
    monitored.configure(hangs={"hang": 1}, **{"demo-fast": {"tokens": 3}})

    rows = probe(hanging, demo("demo-fast"))

    row = rows["hangs"]
    assert (row.ok, row.status, row.error_type, row.http_status, row.ttfb_ms) == (
        False,
        "unknown",
        "timeout",
        None,
        None,
    )
    assert row.total_ms is not None and 500 <= row.total_ms < 5000
    # The other model of the same run is not held up by it.
    assert rows["demo-fast"].ok is True
    assert rows["demo-fast"].total_ms is not None and rows["demo-fast"].total_ms < 500


def test_probes_are_not_usage_records_and_update_the_models_last_probe(monitored: Fake) -> None:
    rows = probe(demo("demo-fast"), demo("demo-smart"))

    assert UsageRecord.objects.count() == 0
    stats = {s.model.name: s for s in ModelStats.objects.select_related("model")}
    assert stats["demo-fast"].last_probe_id == rows["demo-fast"].pk
    assert stats["demo-smart"].last_probe_id == rows["demo-smart"].pk
    assert stats["demo-fast"].availability_1h == 100.0
    assert stats["demo-fast"].refreshed_at == NOW


def test_it_probes_concurrently_within_the_bound(monitored: Fake, settings: Settings) -> None:
    settings.MONITORING_PROBE_CONCURRENCY = 2
    models = [add_model(f"slow-{i}") for i in range(4)]
    monitored.configure(**{f"slow-{i}": {"latency_ms": 400, "tokens": 2} for i in range(4)})

    started = time.monotonic()
    rows = probe(*models)
    elapsed = time.monotonic() - started

    assert all(row.ok for row in rows.values())
    # Four 0.4 s probes, two at a time: two rounds, not one (unbounded) nor four (one at a time).
    assert 0.8 <= elapsed < 1.6


def test_a_disabled_model_is_not_probed(monitored: Fake) -> None:
    model = add_model("switched-off")
    model.enabled = False
    model.save()
    from routing.services import routing_changed

    routing_changed()

    assert probe(model) == {}
    assert monitored.stats()["requests"] == {}
