"""The dashboard's energy panel in Chromium: totals, ranges, the charts by day and by model, the period switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger.models import UsageDaily, UsageDailyByUser, UsageRecord
from ledger.writer import usage_records_create
from tests.fixtures import Fake, Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def record(request_id: str, model: str, energy: tuple[float, float, float], at: datetime, **fields: Any) -> UsageRecord:
    low, central, high = energy
    return UsageRecord(
        request_id=request_id,
        endpoint="generate",
        model=model,
        provider=model.split("/")[0],
        prompt_tokens=1000,
        completion_tokens=500,
        cost_usd=Decimal("0.25"),
        energy_wh=central,
        energy_wh_low=low,
        energy_wh_high=high,
        co2e_g=central / 2,
        co2e_g_low=low / 2,
        co2e_g_high=high / 2,
        created_at=at,
        **fields,
    )


def empty_usage_tables() -> None:
    """The panel sums the whole table, and a row may come late: a server of an earlier test books usage in
    batches (and a stream its client left when it notices), possibly after that test's tables were emptied."""
    UsageRecord.objects.all().delete()
    UsageDaily.objects.all().delete()
    UsageDailyByUser.objects.all().delete()


def open_panel(page: Any, url: str) -> Any:
    page.goto(url + "/")
    if not page.evaluate("!!document.querySelector('script[src$=\"energy/panel.js\"]')"):
        # What {% include "energy_panel.html" %} adds, for a dashboard that does not include it yet.
        page.add_style_tag(url="/static/energy/panel.css")
        page.add_script_tag(url="/static/energy/panel.js")
    page.wait_for_selector("#energy-panel[data-loaded=true]")
    return page.locator("#energy-panel")


def test_the_panel_shows_totals_with_their_ranges_by_day_and_by_model(
    logged_in_page: Any, gateway: Gateway, fake: Fake
) -> None:
    empty_usage_tables()
    now = datetime.now(UTC)
    usage_records_create(
        [
            record("p1", "demo/demo-smart", (0.9, 1.5, 2.4), now - timedelta(minutes=5)),
            record("p2", "demo/demo-fast", (0.25, 0.5, 0.75), now - timedelta(minutes=4), energy_estimated=True),
            record("p3", "demo/demo-fast", (1.0, 2.0, 3.0), now - timedelta(days=20)),
        ]
    )
    page = logged_in_page
    page.evaluate("localStorage.setItem('energy-range-days', '7')")
    panel = open_panel(page, gateway.url)
    totals = panel.locator(".energy-totals")
    assert totals.locator("[data-total=requests] .value").inner_text() == "2"
    assert totals.locator("[data-total=requests] .range").inner_text() == "50% estimated"
    assert totals.locator("[data-total=energy] .value").inner_text() == "2 Wh"
    assert totals.locator("[data-total=energy] .range").inner_text() == "1.15–3.15 Wh"
    assert totals.locator("[data-total=co2e] .value").inner_text() == "1 g"
    assert totals.locator("[data-total=cost] .value").inner_text() == "$0.50"
    assert panel.locator(".energy-chart rect.bar").count() == 7  # one bar per day of the week
    rows = panel.locator(".energy-models tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator(".model-id").inner_text() == "demo/demo-smart"
    assert rows.nth(0).locator("td.num").nth(1).inner_text().splitlines() == ["1.5 Wh", "0.9–2.4 Wh"]
    assert rows.nth(1).locator(".energy-estimated").inner_text() == "est."
    assert "format=csv" in panel.locator("a.energy-csv").get_attribute("href")

    panel.locator("button[data-days='30']").click()
    page.wait_for_function("document.querySelector('#energy-panel [data-total=requests] .value').textContent === '3'")
    assert panel.locator(".energy-chart rect.bar").count() == 30
    assert page.evaluate("localStorage.getItem('energy-range-days')") == "30"
