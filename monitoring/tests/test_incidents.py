"""Automatic incidents with an injected clock: opened after N failed probes or by an open breaker, updated
while failing, resolved on recovery, suppressed by maintenance, one under concurrent openers, announced by
signed webhooks to a real receiver."""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import timedelta

import pytest
from django.db import connection
from pytest_django import Settings

from monitoring.incidents import incident_open, incidents_update
from monitoring.models import Incident, MaintenanceWindow
from monitoring.services import probe_run
from routing.models import CircuitBreaker
from spignosapi.tests.test_webhooks import Receiver, _expected_signature, receiver  # noqa: F401 (a fixture)
from tests.fixtures import Fake
from tests.helpers import wait_until

from .factories import NOW, demo, make_probe

# Most tests run in a transaction of their own (cheap); the two that need commits say so.


@pytest.fixture(autouse=True)
def three_failures(settings: Settings) -> None:
    settings.MONITORING_INCIDENT_AFTER_FAILURES = 3
    settings.MONITORING_INCIDENT_UPDATE_S = 3600
    settings.BREAKER_OPEN_SECONDS = 300.0
    settings.WEBHOOK_URLS = []


def fail(name: str, minutes: int) -> None:
    make_probe(demo(name), NOW + timedelta(minutes=minutes), last=True, status="unknown", http_status=503)


def timeline(incident: Incident) -> list[tuple[str, str]]:
    return [(u.status, u.message) for u in incident.updates.all()]


def test_an_incident_opens_after_n_consecutive_failed_probes_and_not_before(monitored_db: None) -> None:
    make_probe(demo("demo-fast"), NOW - timedelta(minutes=10), last=True)
    fail("demo-fast", 0)
    fail("demo-fast", 10)
    incidents_update(now=NOW + timedelta(minutes=11))
    assert Incident.objects.count() == 0

    fail("demo-fast", 20)
    incidents_update(now=NOW + timedelta(minutes=21))

    incident = Incident.objects.get()
    assert (incident.model, incident.title, incident.cause, incident.automatic) == (
        demo("demo-fast"),
        "demo/demo-fast is down",
        "probes",
        True,
    )
    assert (incident.started_at, incident.resolved_at) == (NOW + timedelta(minutes=21), None)
    assert timeline(incident) == [("investigating", "3 consecutive probe failures: upstream_error (HTTP 503)")]
    # Looking again changes nothing: the incident is open already.
    incidents_update(now=NOW + timedelta(minutes=22))
    assert Incident.objects.count() == 1 and timeline(incident) == timeline(Incident.objects.get())


def test_an_open_breaker_opens_an_incident_while_it_refuses_traffic(monitored_db: None) -> None:
    make_probe(demo("demo-fast"), NOW - timedelta(minutes=1), last=True)  # the probes still pass
    CircuitBreaker.objects.create(
        model=demo("demo-fast"),
        state="open",
        opened_at=(NOW - timedelta(seconds=60)).timestamp(),
        last_error="upstream_error: bad key sk-live-123 quoted back (HTTP 500)",
    )
    # demo-smart's breaker opened longer ago than its open period: its next request is a trial, not refused.
    CircuitBreaker.objects.create(
        model=demo("demo-smart"), state="open", opened_at=(NOW - timedelta(seconds=301)).timestamp()
    )

    incidents_update(now=NOW)

    incident = Incident.objects.get()
    assert (incident.model, incident.cause) == (demo("demo-fast"), "breaker")
    # The provider's message stays out: the timeline is public.
    assert timeline(incident) == [("investigating", "Circuit breaker open: upstream_error (HTTP 500)")]


def test_a_failing_model_gets_a_still_failing_update_once_an_interval(monitored_db: None) -> None:
    for minutes in (0, 10, 20):
        fail("demo-fast", minutes)
    incidents_update(now=NOW + timedelta(minutes=20))
    fail("demo-fast", 30)
    incidents_update(now=NOW + timedelta(minutes=79))  # 59 min after opening: too soon
    assert len(timeline(Incident.objects.get())) == 1

    fail("demo-fast", 80)
    incidents_update(now=NOW + timedelta(minutes=80))

    incident = Incident.objects.get()
    assert timeline(incident)[1] == (
        "identified",
        "Still failing. 5 consecutive probe failures: upstream_error (HTTP 503)",
    )
    assert incident.updated_at == NOW + timedelta(minutes=80)


def test_the_incident_is_resolved_when_the_probes_succeed_again(monitored_db: None) -> None:
    for minutes in (0, 10, 20):
        fail("demo-fast", minutes)
    incidents_update(now=NOW + timedelta(minutes=20))
    make_probe(demo("demo-fast"), NOW + timedelta(minutes=30), last=True)

    incidents_update(now=NOW + timedelta(minutes=31))
    incidents_update(now=NOW + timedelta(minutes=32))  # resolved once

    incident = Incident.objects.get()
    assert (incident.resolved_at, incident.updated_at) == (NOW + timedelta(minutes=31), NOW + timedelta(minutes=31))
    assert [status for status, _ in timeline(incident)] == ["investigating", "resolved"]
    assert timeline(incident)[1] == ("resolved", "Probes succeed again.")
    # A new run of failures is a new incident.
    for minutes in (40, 50, 60):
        fail("demo-fast", minutes)
    incidents_update(now=NOW + timedelta(minutes=61))
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 1
    assert Incident.objects.count() == 2


def test_a_maintenance_window_suppresses_the_incidents_of_its_models(monitored_db: None) -> None:
    window = MaintenanceWindow.objects.create(
        title="Upgrade", starts_at=NOW - timedelta(hours=1), ends_at=NOW + timedelta(hours=1)
    )
    window.affected_models.set([demo("demo-fast")])
    for name in ("demo-fast", "demo-smart"):
        for minutes in (-30, -20, -10):
            fail(name, minutes)

    incidents_update(now=NOW)
    assert list(Incident.objects.values_list("model__name", flat=True)) == ["demo-smart"]

    # Once the window is over, the model still failing gets its incident.
    incidents_update(now=NOW + timedelta(hours=1))
    assert sorted(Incident.objects.values_list("model__name", flat=True)) == ["demo-fast", "demo-smart"]


@pytest.mark.django_db(transaction=True)
def test_two_workers_opening_the_same_incident_open_one(monitored: Fake) -> None:
    model = demo("demo-fast")
    barrier = threading.Barrier(2)
    results: list[Incident | None] = []

    def open_it() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(incident_open(model=model, cause=Incident.Cause.PROBES, reason="3 failures", now=NOW))
        finally:
            connection.close()

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 2
    assert sum(result is not None for result in results) == 1
    assert Incident.objects.count() == 1
    assert Incident.objects.get().updates.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_real_outage_opens_and_resolves_an_incident_announced_by_signed_webhooks(
    celery_worker: subprocess.Popen[bytes],
    monitored: Fake,
    receiver: Receiver,  # noqa: F811 (the fixture imported above)
    settings: Settings,
) -> None:
    settings.WEBHOOK_URLS = [receiver.url]
    monitored.configure(**{"demo-fast": {"status": 503}})
    fast = demo("demo-fast").pk
    for minutes in (0, 10, 20):
        probe_run(model_pks=[fast], now=lambda m=minutes: NOW + timedelta(minutes=m))  # type: ignore[misc]
    monitored.configure(**{"demo-fast": {}})
    probe_run(model_pks=[fast], now=lambda: NOW + timedelta(minutes=30))

    incident = Incident.objects.get()
    assert (incident.started_at, incident.resolved_at) == (NOW + timedelta(minutes=20), NOW + timedelta(minutes=30))
    assert wait_until(lambda: len(receiver.received) == 2, timeout=30)
    bodies = sorted((json.loads(body) for _, body in receiver.received), key=lambda b: b["type"] != "incident.opened")
    assert [b["type"] for b in bodies] == ["incident.opened", "incident.resolved"]
    assert bodies[0]["data"]["id"] == bodies[1]["data"]["id"] == incident.pk
    assert (bodies[0]["data"]["model"], bodies[0]["data"]["state"]) == ("demo/demo-fast", "open")
    assert bodies[1]["data"]["state"] == "resolved"
    assert [u["status"] for u in bodies[1]["data"]["updates"]] == ["investigating", "resolved"]
    for headers, body in receiver.received:
        assert headers["webhook-signature"] == _expected_signature(headers, body)


def test_a_rate_limited_or_too_slow_probe_does_not_resolve_it(monitored_db: None) -> None:
    for minutes in (0, 10, 20):
        fail("demo-fast", minutes)
    incidents_update(now=NOW + timedelta(minutes=20))
    make_probe(
        demo("demo-fast"), NOW + timedelta(minutes=30), status="unknown", http_status=429, error_type="rate_limited"
    )
    incidents_update(now=NOW + timedelta(minutes=31))
    make_probe(demo("demo-fast"), NOW + timedelta(minutes=40), ok=True, status="unknown", total_ms=150_000.0)
    incidents_update(now=NOW + timedelta(minutes=41))

    assert Incident.objects.get().resolved_at is None
