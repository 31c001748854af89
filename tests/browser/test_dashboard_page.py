"""The dashboard at / in headless Chromium, against the real backend: probes over real HTTP to the fake upstream
(run here through the monitoring service, or on the Celery worker by "Refresh now"), served by the gateway."""

from __future__ import annotations

import math
import re
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_django import Settings

from accounts.services import apikey_create
from ledger.models import UsageRecord
from monitoring.models import Probe
from routing.selectors import routing_config
from routing.services import providers_sync
from tests.browser.probing import probe
from tests.fixtures import ARTIFACTS, Fake, Gateway
from tests.helpers import wait_until
from tests.http import call

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser,
    pytest.mark.usefixtures("plain_probes_only"),
]

FAST, SMART = "demo/demo-fast", "demo/demo-smart"


def open_dashboard(page: Any, gateway: Gateway) -> None:
    page.goto(gateway.url + "/")
    page.wait_for_selector("#dashboard[data-loaded=true]")


def visible_models(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("tr.model-row:not([hidden])", "rows => rows.map(r => r.dataset.model)"))


def test_it_lists_every_monitored_model_with_its_last_probe(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-smart": {"status": 503}})
    [fast, smart] = probe(FAST, SMART)
    page = logged_in_page
    open_dashboard(page, gateway)
    assert visible_models(page) == [FAST, SMART]
    row = page.locator(f'tr[data-model="{FAST}"]')
    assert row.locator('[data-col="provider"]').inner_text() == "demo"
    assert row.locator(".badge").get_attribute("data-status") == "smooth"
    assert row.locator(".badge").inner_text() == "Smooth"
    assert row.locator('[data-col="availability_24h"]').inner_text() == "100 %"
    assert fast.ttfb_ms is not None and fast.ttfb_ms < 1000
    # The page rounds as JavaScript's Math.round does (halves up), not as Python's round (halves to even).
    assert row.locator('[data-col="ttfb_ms"]').inner_text() == f"{math.floor(fast.ttfb_ms + 0.5)} ms"
    assert row.locator('[data-col="checked_at"]').inner_text() == "just now"
    assert row.locator('[data-col="energy_wh"]').inner_text().endswith(" mWh")
    failing = page.locator(f'tr[data-model="{SMART}"]')
    assert (smart.ok, smart.http_status) == (False, 503)
    assert failing.locator(".badge").get_attribute("data-status") == "unknown"
    assert failing.locator(".error-note").inner_text() == "HTTP 503"
    assert failing.locator('[data-col="availability_24h"]').inner_text() == "0 %"
    assert failing.locator('[data-col="ttfb_ms"]').inner_text() == "–"
    # The public platform status, and the demo-only routes, are on the banners.
    page.wait_for_selector("#platform-status[data-status=partial_outage]")
    assert page.inner_text("#platform-status .message") == "Down: demo/demo-smart."
    assert page.inner_text("#platform-status .summary") == "1 of 2 models operational"
    assert page.inner_text("#demo-banner").startswith("Demo mode: no real provider configured")
    assert page.locator("section#energy-panel").count() == 1


def test_the_search_box_filters_rows(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    probe(FAST, SMART)
    page = logged_in_page
    open_dashboard(page, gateway)
    page.fill("#search", "smart")
    assert visible_models(page) == [SMART]
    assert page.locator(f'tr[data-model="{FAST}"]').is_hidden()
    page.fill("#search", "demo FAST")  # every word must match, in any case
    assert visible_models(page) == [FAST]
    page.fill("#search", "nothing like it")
    assert visible_models(page) == []
    assert page.locator("#no-match").is_visible()
    page.fill("#search", "")
    assert visible_models(page) == [FAST, SMART]
    assert page.locator("#no-match").is_hidden()


def test_clicking_a_header_sorts_and_clicking_again_reverses(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"ttft_ms": 400}})  # the "fast" model answers last
    probe(FAST, SMART)
    page = logged_in_page
    open_dashboard(page, gateway)
    assert visible_models(page) == [FAST, SMART]  # by model id until a header is clicked
    header = page.locator("th[data-sort=ttfb_ms]")
    header.click()
    assert visible_models(page) == [SMART, FAST]
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert visible_models(page) == [FAST, SMART]
    assert header.get_attribute("aria-sort") == "descending"
    page.click("th[data-sort=model]")
    assert page.locator("th[data-sort=model]").get_attribute("aria-sort") == "ascending"
    assert header.get_attribute("aria-sort") == "none"
    page.click("th[data-sort=model]")
    assert visible_models(page) == [SMART, FAST]


def test_dark_mode_is_remembered_across_reloads(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    page = logged_in_page
    open_dashboard(page, gateway)
    is_dark = "document.documentElement.classList.contains('dark')"
    assert page.evaluate(is_dark) is False
    page.click("#theme-toggle")
    assert page.evaluate(is_dark) is True
    assert page.evaluate("localStorage.getItem('theme')") == "dark"
    page.reload()
    page.wait_for_selector("#dashboard[data-loaded=true]")
    assert page.evaluate(is_dark) is True
    assert page.get_attribute("#theme-toggle", "aria-pressed") == "true"
    page.goto(gateway.url + "/results/")  # every page of the site
    assert page.evaluate(is_dark) is True
    page.click("#theme-toggle")
    page.reload()
    assert page.evaluate(is_dark) is False
    assert page.evaluate("localStorage.getItem('theme')") == "light"


def test_refresh_now_probes_on_the_worker_and_updates_the_row_without_a_reload(
    logged_in_page: Any, gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    probe(FAST, SMART)
    page = logged_in_page
    open_dashboard(page, gateway)
    badge = page.locator(f'tr[data-model="{FAST}"] .badge')
    assert badge.get_attribute("data-status") == "smooth"
    page.wait_for_selector("#platform-status[data-status=operational]")
    page.evaluate("window.__sameDocument = 'still here'")
    fake.configure(**{"demo-fast": {"status": 500}})
    page.click("#refresh")
    page.wait_for_selector(f'tr[data-model="{FAST}"] .badge[data-status=unknown]', timeout=30_000)
    page.wait_for_selector("#refresh-state[data-state=done]", timeout=30_000)
    assert page.inner_text("#refresh-state") == "· probed 2 models"
    assert page.evaluate("window.__sameDocument") == "still here"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert page.locator(f'tr[data-model="{FAST}"] .error-note').inner_text() == "HTTP 500"
    assert page.locator(f'tr[data-model="{FAST}"] [data-col="availability_24h"]').inner_text() == "50 %"
    assert page.locator(f'tr[data-model="{SMART}"] .badge').get_attribute("data-status") == "smooth"
    page.wait_for_selector("#platform-status[data-status=partial_outage]")
    latest = Probe.objects.filter(model__name="demo-fast").order_by("-checked_at").first()
    assert latest is not None and (latest.ok, latest.status, latest.http_status) == (False, "unknown", 500)
    assert Probe.objects.count() == 4
    assert fake.stats()["requests"] == {"demo-fast": 2, "demo-smart": 2}


def test_it_polls_the_statistics_every_15_seconds(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    page = logged_in_page
    open_dashboard(page, gateway)
    assert page.locator(f'tr[data-model="{FAST}"] .badge').get_attribute("data-status") == "unknown"  # never probed
    assert page.inner_text(f'tr[data-model="{FAST}"] [data-col="checked_at"]') == "never"
    page.evaluate("window.__sameDocument = 'still here'")
    probe(FAST)  # e.g. by beat, elsewhere
    page.wait_for_selector(f'tr[data-model="{FAST}"] .badge[data-status=smooth]', timeout=20_000)
    checked = page.inner_text(f'tr[data-model="{FAST}"] [data-col="checked_at"]')
    assert checked == "just now" or re.fullmatch(r"1\d s ago", checked), checked  # probed right after the load
    assert page.evaluate("window.__sameDocument") == "still here"


def test_the_kanban_view_shows_each_model_under_its_bucket(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-smart": {"status": 429, "retry_after": 1}})
    probe(FAST, SMART)
    page = logged_in_page
    open_dashboard(page, gateway)
    page.click("#view-kanban")
    assert page.locator("#table-view").is_hidden()
    assert page.locator(f'.kanban-column[data-status=smooth] .card[data-model="{FAST}"]').is_visible()
    assert page.locator(f'.kanban-column[data-status=unknown] .card[data-model="{SMART}"]').is_visible()
    counts = page.eval_on_selector_all(
        ".kanban-column", "cs => cs.map(c => c.dataset.status + ':' + c.querySelector('.count').textContent)"
    )
    assert counts == ["smooth:1", "available:0", "congestion:0", "lagging:0", "unknown:1"]
    page.fill("#search", "fast")  # the filter applies to the cards too
    assert page.locator(f'.card[data-model="{SMART}"]').is_hidden()
    page.reload()  # the chosen view is remembered
    page.wait_for_selector("#dashboard[data-loaded=true]")
    assert page.locator("#kanban-view").is_visible()
    page.click("#view-table")
    assert page.locator("#kanban-view").is_hidden()
    assert page.locator("#table-view").is_visible()


def test_clicking_a_row_draws_its_history(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    start = timezone.now()
    for hours_ago in (3, 2, 1):
        # mypy cannot infer a lambda whose default binds the loop variable (misc).
        probe(FAST, now=lambda h=hours_ago: start - timedelta(hours=h))  # type: ignore[misc]
    fake.configure(**{"demo-fast": {"status": 502}})
    probe(FAST)
    page = logged_in_page
    open_dashboard(page, gateway)
    page.click(f'tr[data-model="{FAST}"]')
    chart = page.wait_for_selector(f'tr.history-row[data-history-for="{FAST}"] svg.history-chart')
    assert chart is not None and chart.get_attribute("data-points") == "4"
    assert page.get_attribute("svg.history-chart polyline.line-total", "data-points") == "3"
    assert page.get_attribute("svg.history-chart polyline.line-ttfb", "data-points") == "3"
    assert page.locator("svg.history-chart .error-mark").count() == 1
    page.click("th[data-sort=provider]")  # the chart stays under its row when the table reorders
    assert page.evaluate("document.querySelector('tr.history-row').previousElementSibling.dataset.model") == FAST
    page.click(f'tr[data-model="{FAST}"]')
    assert page.locator("tr.history-row").count() == 0


def test_the_pages_ask_for_a_login(browser: Any, gateway: Gateway) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(gateway.url + "/")
    assert page.url == gateway.url + "/admin/login/?next=/"
    page.goto(gateway.url + "/results/")
    assert page.url == gateway.url + "/admin/login/?next=/results/"
    context.close()


# --- the screenshot ------------------------------------------------------------------------------------

# Bucket bounds in seconds, small enough that the fake upstream's delays reach every bucket quickly.
FAST_THRESHOLDS = {
    "MONITORING_SMOOTH_MAX_S": 0.5,
    "MONITORING_AVAILABLE_MAX_S": 1.0,
    "MONITORING_CONGESTION_MAX_S": 1.5,
    "MONITORING_LAGGING_MAX_S": 2.0,
}

# model name -> time to first token (ms) of the last probe, well inside its bucket (a loaded machine adds
# some); None: failing.
SCENARIO: dict[str, int | None] = {
    "demo-fast": 20,
    "demo-smart": 650,
    "gpt-large": 1150,
    "gpt-mini": 60,
    "vision-beta": 1650,
    "legacy-7b": None,
}


def test_it_screenshots_the_dashboard_with_a_day_of_data(
    logged_in_page: Any, gateway: Gateway, fake: Fake, settings: Settings
) -> None:
    for name, value in FAST_THRESHOLDS.items():
        setattr(settings, name, value)
    providers_sync(
        document={
            "providers": [
                {
                    "name": "acme",
                    "kind": "openai_compatible",
                    "base_url": fake.url + "/v1",
                    "models": [
                        {"name": name, "monitor": True, "energy_kwh_per_m": 0.4}
                        for name in ("gpt-large", "gpt-mini", "vision-beta", "legacy-7b")
                    ],
                }
            ]
        }
    )
    ids = [m for m in sorted(routing_config.get(recheck=True).models) if m.split("/")[1] in SCENARIO]
    start = timezone.now()
    # demo-smart's day: a probe every two hours, wandering around its last value, one of them failed.
    for round_ in range(11):
        ttft = int(650 * (0.75 + 0.5 * ((round_ * 7) % 10) / 10))
        fake.configure(**{"demo-smart": {"status": 503} if round_ == 7 else {"ttft_ms": ttft, "tps": 400}})
        # mypy cannot infer a lambda whose default binds the loop variable (misc).
        probe(SMART, now=lambda r=round_: start - timedelta(hours=2 * (11 - r)))  # type: ignore[misc]
    fake.configure(
        **{name: {"status": 503} if ttft is None else {"ttft_ms": ttft, "tps": 400} for name, ttft in SCENARIO.items()}
    )
    probe(*ids)
    # Some traffic, so the energy panel under the table has something to show.
    fake.configure(**{"*": {"tokens": 120}})
    _, key = apikey_create(name="dashboard screenshot")
    requests = [("demo/demo-smart", 200), ("acme/gpt-large", 120), ("acme/gpt-mini", 60), ("demo/demo-fast", 40)]
    for model, max_tokens in requests:
        reply = call(
            "POST",
            gateway.url + "/api/v1/generate",
            {"prompt": "hi", "model": model, "max_tokens": max_tokens},
            key=key,
        )
        assert reply.status == 200, reply.text
    assert wait_until(lambda: UsageRecord.objects.count() == len(requests))
    page = logged_in_page
    page.set_viewport_size({"width": 1280, "height": 900})
    open_dashboard(page, gateway)
    page.wait_for_selector("#platform-status[data-status=partial_outage]")
    assert page.locator("#demo-banner").count() == 0  # a real provider is configured now
    statuses = page.eval_on_selector_all(
        "tr.model-row", "rows => rows.map(r => r.dataset.model + ':' + r.querySelector('.badge').dataset.status)"
    )
    assert sorted(statuses) == [
        "acme/gpt-large:congestion",
        "acme/gpt-mini:smooth",
        "acme/legacy-7b:unknown",
        "acme/vision-beta:lagging",
        "demo/demo-fast:smooth",
        "demo/demo-smart:available",
    ]
    page.click("th[data-sort=ttfb_ms]")
    page.click('tr[data-model="demo/demo-smart"]')
    page.wait_for_selector("svg.history-chart[data-points='12']")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.click("#view-kanban")
    page.screenshot(path=str(ARTIFACTS / "dashboard-kanban.png"), full_page=True)
    page.click("#theme-toggle")
    page.click("#view-table")
    page.screenshot(path=str(ARTIFACTS / "dashboard-dark.png"), full_page=True)
