"""The public status page in headless Chromium: complete with JavaScript off, no sideways scroll at phone width,
live refresh with it on, and its screenshots (in test-artifacts/; with UPDATE_SCREENSHOTS=1, also the README's
docs/screenshots/status-1440.png and status-390.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from monitoring.models import Incident, IncidentUpdate, MaintenanceWindow, ModelStats, Rollup
from monitoring.statistics import floor_day
from monitoring.tests.factories import demo, make_probe
from tests.fixtures import ARTIFACTS, Fake, Gateway
from tests.helpers import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def history(gateway: Gateway) -> None:
    """Ninety days of demo-fast and demo-smart: a few bad days, a past incident, one open, a maintenance ahead."""
    now = timezone.now()
    today = floor_day(now)
    fast, smart = demo("demo-fast"), demo("demo-smart")
    for days_ago in range(1, 90):
        start = today - timedelta(days=days_ago)
        errors = {12: 3, 40: 30}.get(days_ago, 0)
        Rollup.objects.create(model=fast, period="day", start=start, probes=144, successes=144 - errors, errors=errors)
        if days_ago < 60:  # demo-smart joined 60 days ago
            errors = {5: 10, 6: 144}.get(days_ago, 0)
            Rollup.objects.create(
                model=smart, period="day", start=start, probes=144, successes=144 - errors, errors=errors
            )
    make_probe(fast, now - timedelta(minutes=3), last=True, ttfb_ms=180.0, tokens_per_sec=95.0)
    for minutes in (25, 15, 5):
        make_probe(
            smart, now - timedelta(minutes=minutes), last=True, status="unknown", error_type="timeout", http_status=None
        )
    # The 24 h percentiles as the statistics refresh merges them (probes and traffic).
    ModelStats.objects.filter(model=fast).update(
        percentiles={
            "24h": {
                "window": "24h",
                "ttft_ms": {"p50": 182.0, "p95": 240.0, "p99": 251.0},
                "tokens_per_sec": {"p50": 96.4, "p95": 120.2, "p99": 121.0},
            }
        }
    )
    opened = Incident.objects.create(
        model=smart,
        title="demo/demo-smart is down",
        cause="probes",
        automatic=True,
        started_at=now - timedelta(minutes=5),
    )
    IncidentUpdate.objects.create(
        incident=opened,
        status="investigating",
        message="3 consecutive probe failures: timeout",
        created_at=opened.started_at,
    )
    past = Incident.objects.create(
        title="Slow answers from every model",
        started_at=now - timedelta(days=12, hours=3),
        resolved_at=now - timedelta(days=12, hours=1),
    )
    for status, message, hours in (
        ("investigating", "Answers take several seconds longer than usual.", 3),
        ("identified", "A provider region is congested; traffic moved to another one.", 2),
        ("resolved", "Latency is back to normal.", 1),
    ):
        IncidentUpdate.objects.create(
            incident=past, status=status, message=message, created_at=now - timedelta(days=12, hours=hours)
        )
    MaintenanceWindow.objects.create(
        title="Database upgrade",
        message="Requests may fail for up to a minute.",
        starts_at=today + timedelta(days=2, hours=6),
        ends_at=today + timedelta(days=2, hours=7),
    )


@pytest.fixture
def no_script_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(java_script_enabled=False)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_status_page_is_complete_without_javascript(
    no_script_page: Any, gateway: Gateway, history: None, fake: Fake
) -> None:
    page = no_script_page
    response = page.goto(gateway.url + "/status/")
    assert response.status == 200 and page.url == gateway.url + "/status/"  # no login redirect

    assert page.locator("#overall").get_attribute("data-status") == "partial_outage"
    assert page.locator("#overall .overall-label").inner_text() == "Partial outage"
    states = page.locator("article.model .state")
    assert states.all_inner_texts() == ["Operational", "Down"]
    assert page.locator('article.model[data-model="demo/demo-smart"] .reason').inner_text() == (
        "3 consecutive probe failures: timeout"
    )
    fast_days = page.locator('article.model[data-model="demo/demo-fast"] li.day')
    assert fast_days.count() == 90
    forty_days_ago = (floor_day(timezone.now()) - timedelta(days=40)).strftime("%Y-%m-%d")
    assert fast_days.nth(49).get_attribute("title") == f"{forty_days_ago}: 79.17 % available (144 probes)"
    smart_days = page.locator('article.model[data-model="demo/demo-smart"] li.day')
    assert smart_days.nth(0).get_attribute("data-level") == "none"
    assert smart_days.nth(0).get_attribute("title").endswith(": no data")
    assert page.locator('article.model[data-model="demo/demo-fast"] .figures').inner_text().split("\n") == [
        "TTFT p50",
        "182 ms",
        "TTFT p95",
        "240 ms",
        "Tokens/s p50",
        "96.4 tok/s",
        "Tokens/s p95",
        "120.2 tok/s",
    ]
    assert page.locator(".incidents.open .incident h3").all_inner_texts() == ["demo/demo-smart is down"]
    assert page.locator(".incidents.past .timeline li").count() == 3
    assert "Database upgrade Scheduled" in page.locator(".maintenance").inner_text()


@pytest.mark.parametrize("width", [1440, 390])
def test_the_status_page_fits_the_screen_and_is_screenshotted(
    browser: Any, gateway: Gateway, history: None, fake: Fake, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
    try:
        page = context.new_page()
        page.goto(gateway.url + "/status/")
        page.wait_for_selector("article.model")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow == 0
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"status-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        # The README's copies change only when asked: a test run leaves the work tree as it found it.
        if os.environ.get("UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOTS / shot.name)
    finally:
        context.close()


def test_with_javascript_the_page_reloads_itself_in_place(browser: Any, gateway: Gateway, fake: Fake) -> None:
    make_probe(demo("demo-fast"), timezone.now(), last=True)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.clock.install()
        page.goto(gateway.url + "/status/")
        page.evaluate("document.body.dataset.marker = 'same page'")  # survives only an in-place refresh
        assert page.locator(".incidents.open").count() == 0
        Incident.objects.create(model=demo("demo-fast"), title="Fast is failing", started_at=timezone.now())

        page.clock.run_for(61_000)

        page.wait_for_selector(".incidents.open .incident h3")
        assert page.locator(".incidents.open .incident h3").inner_text() == "Fast is failing"
        assert page.evaluate("document.body.dataset.marker") == "same page"
    finally:
        context.close()
