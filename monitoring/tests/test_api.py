"""The status API, the monitoring JSON, the probe log and the refresh, over real HTTP."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts.services import apikey_create
from monitoring.models import ModelStats, MonitoringSettings, Probe
from routing.models import Provider
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import call

from .factories import add_model, demo, make_probe

pytestmark = pytest.mark.django_db(transaction=True)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def get(gateway: Gateway, path: str, key: str | None = None) -> Any:
    reply = call("GET", gateway.url + path, key=key)
    assert reply.status == 200, reply.text
    return reply.json()


# --- GET /api/v1/platform-status --------------------------------------------------------------------------

SCENARIOS = {
    "operational": (("smooth", "available"), False, "All models are operational.", []),
    "degraded": (("congestion", "smooth"), False, "Slow: demo/demo-fast.", []),
    "degraded-lagging": (("lagging", "lagging"), False, "Slow: demo/demo-fast, demo/demo-smart.", []),
    "partial_outage": (("unknown", "smooth"), False, "Down: demo/demo-fast.", ["demo/demo-fast"]),
    "major_outage": (("unknown", "unknown"), False, "Every model is down.", ["demo/demo-fast", "demo/demo-smart"]),
    "never-probed": ((None, None), False, "Not probed yet: demo/demo-fast, demo/demo-smart.", []),
    "maintenance": (("unknown", "smooth"), True, "Upgrading the database until 10:00 UTC.", ["demo/demo-fast"]),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_platform_status_follows_the_models_last_probes(gateway: Gateway, monitored: Fake, scenario: str) -> None:
    (fast_status, smart_status), maintenance, message, failed = SCENARIOS[scenario]
    now = timezone.now()
    for name, status in (("demo-fast", fast_status), ("demo-smart", smart_status)):
        if status is not None:
            make_probe(demo(name), now - timedelta(hours=1), last=True, status="smooth")  # older: ignored
            make_probe(demo(name), now - timedelta(minutes=2), last=True, status=status)
        else:
            ModelStats.objects.filter(model=demo(name)).update(last_probe=None)
    if maintenance:
        MonitoringSettings.objects.filter(pk=1).update(maintenance=True, maintenance_message=message)

    body = get(gateway, "/api/v1/platform-status")

    expected_status = scenario.split("-")[0] if scenario != "never-probed" else "degraded"
    assert set(body) == {"status", "message", "updated_at", "stats", "failed_models"}
    assert (body["status"], body["message"], body["failed_models"]) == (expected_status, message, failed)
    # A model not probed yet is neither failed nor operational.
    operational = 0 if scenario == "never-probed" else 2 - len(failed)
    assert body["stats"] == {"operational_models": operational, "total_models": 2}


def test_platform_status_is_public_and_ignores_a_wrong_key(gateway: Gateway, monitored: Fake) -> None:
    reply = call("GET", gateway.url + "/api/v1/platform-status", key="not-a-key")
    assert reply.status == 200
    assert reply.json()["stats"]["total_models"] == 2


def test_unmonitored_and_disabled_models_do_not_count(gateway: Gateway, monitored: Fake) -> None:
    add_model("quiet", monitor=False)
    off = add_model("off")
    off.enabled = False
    off.save()
    for name in ("demo-fast", "demo-smart"):
        make_probe(demo(name), timezone.now(), last=True)

    body = get(gateway, "/api/v1/platform-status")

    assert (body["status"], body["stats"]["total_models"]) == ("operational", 2)


def test_one_models_status_has_the_contract_shape(gateway: Gateway, monitored: Fake) -> None:
    fast = demo("demo-fast")
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    make_probe(fast, at - timedelta(minutes=30), status="unknown")
    make_probe(
        fast,
        at,
        last=True,
        status="available",
        ttfb_ms=1234.5,
        total_ms=9000.2,
        tokens_per_sec=31.25,
        prompt_tokens=14,
        completion_tokens=16,
        energy_wh=0.0015,
    )
    from monitoring.services import stats_refresh

    stats_refresh()

    body = get(gateway, "/api/v1/platform-status?model=" + quote("demo/demo-fast"))

    assert body == {
        "model": "demo/demo-fast",
        "ok": True,
        "status": "available",
        "http_status": 200,
        "ttfb_ms": 1234.5,
        "tokens_per_sec": 31.25,
        "total_ms": 9000.2,
        "usage": {"total_tokens": 30},
        "energy_wh": 0.0015,
        "checked_at": iso(at),
        "availability": {"1h": 50.0, "24h": 50.0, "7d": 50.0},
        "percentiles": {
            "window": "24h",
            "source": "probes",
            "samples": 1,
            "samples_by_source": {"probes": 1, "traffic": 0},
            "newest_at": iso(at),
            # One sample: its bin's value, within 1 % of it (monitoring.percentiles).
            "ttft_ms": {"p50": 1224.38, "p95": 1224.38, "p99": 1224.38},
            "total_ms": {"p50": 9047.59, "p95": 9047.59, "p99": 9047.59},
            "tokens_per_sec": {"p50": 31.5, "p95": 31.5, "p99": 31.5},
        },
        "state": "operational",
        "state_reason": "Probes succeed",
        "open_incident": None,
    }


def test_a_failed_or_never_probed_model_shows_nulls_not_zeros(gateway: Gateway, monitored: Fake) -> None:
    at = timezone.now().replace(microsecond=0)
    make_probe(demo("demo-fast"), at, last=True, status="unknown", http_status=None, error_type="timeout")

    failed = get(gateway, "/api/v1/platform-status?model=demo/demo-fast")
    never = get(gateway, "/api/v1/platform-status?model=demo/demo-smart")

    assert failed == {
        "model": "demo/demo-fast",
        "ok": False,
        "status": "unknown",
        "http_status": None,
        "ttfb_ms": None,
        "tokens_per_sec": None,
        "total_ms": 500.0,
        "usage": {"total_tokens": None},
        "energy_wh": None,
        "checked_at": iso(at),
        "availability": {"1h": None, "24h": None, "7d": None},
        "percentiles": NO_PERCENTILES,
        "state": "down",
        "state_reason": "1 consecutive probe failure: timeout",
        "open_incident": None,
    }
    assert never == {
        "model": "demo/demo-smart",
        "ok": False,
        "status": "unknown",
        "http_status": None,
        "ttfb_ms": None,
        "tokens_per_sec": None,
        "total_ms": None,
        "usage": {"total_tokens": None},
        "energy_wh": None,
        "checked_at": None,
        "availability": {"1h": None, "24h": None, "7d": None},
        "percentiles": NO_PERCENTILES,
        "state": "unknown",
        "state_reason": "Not probed yet",
        "open_incident": None,
    }


NO_PERCENTILES = {
    "window": "24h",
    "source": None,
    "samples": 0,
    "samples_by_source": {"probes": 0, "traffic": 0},
    "newest_at": None,
    "ttft_ms": {"p50": None, "p95": None, "p99": None},
    "total_ms": {"p50": None, "p95": None, "p99": None},
    "tokens_per_sec": {"p50": None, "p95": None, "p99": None},
}


def test_a_models_percentiles_cover_the_window_asked_for(gateway: Gateway, monitored: Fake) -> None:
    fast = demo("demo-fast")
    now = timezone.now().replace(microsecond=0)
    make_probe(fast, now - timedelta(minutes=5), ttfb_ms=100.0)
    make_probe(fast, now - timedelta(hours=5), ttfb_ms=300.0)
    make_probe(fast, now - timedelta(days=3), ttfb_ms=900.0)
    from monitoring.services import stats_refresh

    stats_refresh()
    path = "/api/v1/platform-status?model=demo/demo-fast"

    windows = {w: get(gateway, f"{path}&window={w}")["percentiles"] for w in ("1h", "24h", "7d")}

    assert get(gateway, path)["percentiles"] == windows["24h"]
    assert {w: (p["window"], p["samples"], p["ttft_ms"]["p99"]) for w, p in windows.items()} == {
        "1h": ("1h", 1, 100.49),
        "24h": ("24h", 2, 301.91),
        "7d": ("7d", 3, 907.03),
    }
    assert windows["7d"]["newest_at"] == iso(now - timedelta(minutes=5))
    reply = call("GET", gateway.url + path + "&window=30d")
    assert reply.status == 400
    assert (reply.json()["error"]["type"], reply.json()["error"]["param"]) == ("invalid_request_error", "window")


def test_an_unknown_model_is_a_404_envelope(gateway: Gateway, monitored: Fake) -> None:
    add_model("quiet", monitor=False)
    for model_id in ("nope/nothing", "demo/quiet"):
        reply = call("GET", gateway.url + "/api/v1/platform-status?model=" + model_id)
        assert reply.status == 404
        assert reply.json()["error"]["code"] == "model_not_found"


# --- GET /api/v1/monitoring/stats and /history ---------------------------------------------------------


def test_stats_lists_every_monitored_model_in_the_agreed_shape(gateway: Gateway, monitored: Fake) -> None:
    _, raw = apikey_create(name="k")
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    make_probe(demo("demo-fast"), at, last=True, ttfb_ms=120.5, total_ms=900.1, tokens_per_sec=45.2, energy_wh=0.0012)
    from monitoring.services import stats_refresh

    stats_refresh()

    body = get(gateway, "/api/v1/monitoring/stats", key=raw)

    assert set(body) == {"updated_at", "models"}
    fast, smart = body["models"]
    assert fast == {
        "model": "demo/demo-fast",
        "provider": "demo",
        "status": "smooth",
        "state": "operational",
        "state_reason": "Probes succeed",
        "ok": True,
        "http_status": 200,
        "error": None,
        "ttfb_ms": 120.5,
        "total_ms": 900.1,
        "tokens_per_sec": 45.2,
        "energy_wh": 0.0012,
        "checked_at": iso(at),
        "availability": {"1h": 100.0, "24h": 100.0, "7d": 100.0, "30d": 100.0},
        "p50_ttfb_ms": 120.5,
        "p95_ttfb_ms": 120.5,
        "p50_total_ms": 900.1,
        "p95_total_ms": 900.1,
        "p50_tokens_per_sec": 45.2,
        "p95_tokens_per_sec": 45.2,
        "validity_24h": {"tool_call": None, "structured_output": None},
        "percentiles": {
            window: {
                "window": window,
                "source": "probes",
                "samples": 1,
                "samples_by_source": {"probes": 1, "traffic": 0},
                "newest_at": iso(at),
                "ttft_ms": {"p50": 120.31, "p95": 120.31, "p99": 120.31},
                "total_ms": {"p50": 907.03, "p95": 907.03, "p99": 907.03},
                "tokens_per_sec": {"p50": 45.15, "p95": 45.15, "p99": 45.15},
            }
            for window in ("1h", "24h", "7d")
        },
    }
    assert smart["percentiles"]["7d"] == {**NO_PERCENTILES, "window": "7d"}
    assert (smart["model"], smart["status"], smart["ok"], smart["checked_at"]) == (
        "demo/demo-smart",
        "unknown",
        False,
        None,
    )
    assert smart["availability"] == {"1h": None, "24h": None, "7d": None, "30d": None}
    assert (smart["state"], smart["state_reason"]) == ("unknown", "Not probed yet")
    assert call("GET", gateway.url + "/api/v1/monitoring/stats").status == 401


def test_stats_answer_a_logged_in_session(monitored: Fake) -> None:
    user = get_user_model().objects.create_user("viewer", password="pw-123456789")
    client = Client()
    client.force_login(user)
    reply = client.get("/api/v1/monitoring/stats")
    assert reply.status_code == 200
    assert [m["model"] for m in reply.json()["models"]] == ["demo/demo-fast", "demo/demo-smart"]


def test_history_lists_a_models_probes_oldest_first(gateway: Gateway, monitored: Fake) -> None:
    _, raw = apikey_create(name="k")
    fast = demo("demo-fast")
    now = timezone.now().replace(microsecond=0)
    make_probe(fast, now - timedelta(hours=30))  # outside 24 h
    newer = make_probe(fast, now - timedelta(minutes=5), total_ms=800.0)
    older = make_probe(fast, now - timedelta(hours=2), status="unknown", total_ms=1500.0)
    make_probe(demo("demo-smart"), now)

    body = get(gateway, "/api/v1/monitoring/history?model=demo/demo-fast&hours=24", key=raw)

    assert body == {
        "model": "demo/demo-fast",
        "points": [
            {
                "checked_at": iso(older.checked_at),
                "ttfb_ms": None,
                "total_ms": 1500.0,
                "status": "unknown",
                "ok": False,
                "http_status": 503,
                "error": "Service Unavailable",
            },
            {
                "checked_at": iso(newer.checked_at),
                "ttfb_ms": 100.0,
                "total_ms": 800.0,
                "status": "smooth",
                "ok": True,
                "http_status": 200,
                "error": "",
            },
        ],
    }
    assert len(get(gateway, "/api/v1/monitoring/history?model=demo/demo-fast&hours=48", key=raw)["points"]) == 3
    assert call("GET", gateway.url + "/api/v1/monitoring/history?model=no/such", key=raw).status == 404
    assert call("GET", gateway.url + "/api/v1/monitoring/history", key=raw).status == 400
    assert call("GET", gateway.url + "/api/v1/monitoring/history?model=demo/demo-fast&hours=0", key=raw).status == 400


# --- GET /api/v1/monitoring/results -------------------------------------------------------------------------


def test_results_filter_by_model_provider_since_and_bucket_and_paginate(gateway: Gateway, monitored: Fake) -> None:
    _, raw = apikey_create(name="k")
    Provider.objects.create(name="other", kind="openai_compatible", base_url=monitored.url + "/v1")
    other = add_model("m1", provider="other")
    fast, smart = demo("demo-fast"), demo("demo-smart")
    now = timezone.now().replace(microsecond=0)
    probes = {
        "fast-old": make_probe(fast, now - timedelta(hours=3)),
        "fast-error": make_probe(fast, now - timedelta(hours=2), status="unknown"),
        "smart-slow": make_probe(smart, now - timedelta(minutes=50), status="lagging"),
        "other": make_probe(other, now - timedelta(minutes=40)),
        "fast-new": make_probe(fast, now - timedelta(minutes=30)),
    }

    def ids(query: str) -> list[int]:
        return [r["id"] for r in get(gateway, "/api/v1/monitoring/results" + query, key=raw)["results"]]

    def pks(*names: str) -> list[int]:
        return [probes[n].pk for n in names]

    assert ids("") == pks("fast-new", "other", "smart-slow", "fast-error", "fast-old")
    assert ids("?model=demo/demo-fast") == pks("fast-new", "fast-error", "fast-old")
    assert ids("?provider=demo") == pks("fast-new", "smart-slow", "fast-error", "fast-old")
    assert ids("?provider=other") == pks("other")
    assert ids("?bucket=unknown") == pks("fast-error")
    assert ids("?model=demo/demo-fast&bucket=smooth") == pks("fast-new", "fast-old")
    since = quote(iso(now - timedelta(hours=1)))
    assert ids(f"?since={since}") == pks("fast-new", "other", "smart-slow")

    first = get(gateway, "/api/v1/monitoring/results?page_size=2", key=raw)
    assert first["count"] == 5
    assert first["previous"] is None and first["next"].endswith("/api/v1/monitoring/results?page=2&page_size=2")
    assert [r["id"] for r in first["results"]] == pks("fast-new", "other")
    last = get(gateway, "/api/v1/monitoring/results?page=3&page_size=2", key=raw)
    assert (last["next"], [r["id"] for r in last["results"]]) == (None, pks("fast-old"))

    [error_row] = get(gateway, "/api/v1/monitoring/results?bucket=unknown", key=raw)["results"]
    assert error_row == {
        "id": probes["fast-error"].pk,
        "model": "demo/demo-fast",
        "provider": "demo",
        "kind": "stream",
        "status": "unknown",
        "ok": False,
        "http_status": 503,
        "error_type": "upstream_error",
        "error": "Service Unavailable",
        "ttfb_ms": None,
        "total_ms": 500.0,
        "tokens_per_sec": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "energy_wh": None,
        "checked_at": iso(probes["fast-error"].checked_at),
    }


def test_results_refuse_bad_filters(gateway: Gateway, monitored: Fake) -> None:
    _, raw = apikey_create(name="k")
    for query in ("?bucket=fast", "?since=yesterday", "?page=9"):
        reply = call("GET", gateway.url + "/api/v1/monitoring/results" + query, key=raw)
        assert reply.status in (400, 404), query
        assert "error" in reply.json()
    assert call("GET", gateway.url + "/api/v1/monitoring/results?bucket=fast", key=raw).status == 400
    assert call("GET", gateway.url + "/api/v1/monitoring/results").status == 401


# --- POST /api/v1/monitoring/refresh ------------------------------------------------------------------------


def test_refresh_by_staff_probes_on_the_worker(
    gateway: Gateway, monitored: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="staff", is_staff=True)
    monitored.configure(**{"demo-smart": {"status": 503}, "demo-fast": {"tokens": 3}})

    reply = call("POST", gateway.url + "/api/v1/monitoring/refresh", key=raw)

    assert reply.status == 202, reply.text
    body = reply.json()
    assert set(body) == {"status", "task_id", "models"}
    assert (body["status"], body["models"]) == ("queued", ["demo/demo-fast", "demo/demo-smart"])
    # Each demo model: a streaming, a tool-call and a structured-output probe.
    assert wait_until(lambda: Probe.objects.count() == 6, timeout=30)
    # The statistics are refreshed just after the probes are stored: wait for both.
    assert wait_until(
        lambda: all(
            m["checked_at"] and m["availability"]["1h"] is not None
            for m in get(gateway, "/api/v1/monitoring/stats", raw)["models"]
        )
    )
    fast, smart = get(gateway, "/api/v1/monitoring/stats", raw)["models"]
    assert (fast["ok"], fast["status"], fast["http_status"]) == (True, "smooth", 200)
    assert (smart["ok"], smart["status"], smart["http_status"], smart["ttfb_ms"]) == (False, "unknown", 503, None)
    assert smart["availability"]["1h"] == 0.0


def test_refresh_of_chosen_models_probes_only_those(
    gateway: Gateway, monitored: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="staff", is_staff=True)

    reply = call("POST", gateway.url + "/api/v1/monitoring/refresh", {"models": ["demo/demo-smart"]}, key=raw)

    assert reply.status == 202, reply.text
    assert reply.json()["models"] == ["demo/demo-smart"]
    assert wait_until(lambda: Probe.objects.exists(), timeout=30)
    assert wait_until(lambda: monitored.stats()["requests"] == {"demo-smart": 3})
    assert sorted((p.model.name, p.kind) for p in Probe.objects.all()) == [
        ("demo-smart", "stream"),
        ("demo-smart", "structured_output"),
        ("demo-smart", "tool_call"),
    ]


def test_refresh_is_for_staff_and_known_models_only(gateway: Gateway, monitored: Fake) -> None:
    _, user_raw = apikey_create(name="user")
    _, staff_raw = apikey_create(name="staff", is_staff=True)
    url = gateway.url + "/api/v1/monitoring/refresh"

    forbidden = call("POST", url, key=user_raw)
    unknown = call("POST", url, {"models": ["demo/demo-fast", "nope/x"]}, key=staff_raw)
    empty = call("POST", url, {"models": []}, key=staff_raw)

    assert forbidden.status == 403 and forbidden.json()["error"]["type"] == "permission_error"
    assert unknown.status == 400 and unknown.json()["error"]["param"] == "models"
    assert empty.status == 400
    assert call("POST", url).status == 401
