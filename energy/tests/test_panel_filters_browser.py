"""The energy panel's team and key filters in Chromium: their choices, and the totals of what is chosen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accounts.models import Team
from accounts.services import apikey_create
from ledger.writer import usage_records_create
from tests.fixtures import Gateway

from .test_panel_browser import empty_usage_tables, open_panel, record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def requests_total(page: Any, value: str) -> None:
    page.wait_for_function(
        f"document.querySelector('#energy-panel [data-total=requests] .value').textContent === '{value}'"
    )


def test_the_panel_filters_by_team_and_by_key(logged_in_page: Any, gateway: Gateway) -> None:
    empty_usage_tables()
    ml = Team.objects.create(name="ml")
    a, _ = apikey_create(name="alpha", team=ml)
    b, _ = apikey_create(name="beta")
    now = datetime.now(UTC) - timedelta(minutes=5)
    usage_records_create(
        [
            record("f1", "demo/demo-fast", (0.5, 1.0, 2.0), now, api_key_id=a.pk),
            record("f2", "demo/demo-fast", (0.5, 1.0, 2.0), now, api_key_id=a.pk),
            record("f3", "demo/demo-smart", (0.5, 1.0, 2.0), now, api_key_id=b.pk),
        ]
    )
    page = logged_in_page
    panel = open_panel(page, gateway.url)
    requests_total(page, "3")
    page.wait_for_selector("#energy-panel select[name=key]")
    teams = panel.locator("select[name=team] option")
    assert [teams.nth(i).inner_text() for i in range(teams.count())] == ["All teams", "ml"]
    keys = panel.locator("select[name=key] option")
    assert [keys.nth(i).get_attribute("value") for i in range(keys.count())] == ["", a.prefix, b.prefix]
    assert keys.nth(1).inner_text() == f"alpha ({a.prefix}…)"

    panel.locator("select[name=team]").select_option("ml")
    requests_total(page, "2")
    assert "team=ml" in (panel.locator("a.energy-csv").get_attribute("href") or "")

    panel.locator("select[name=team]").select_option("")
    panel.locator("select[name=key]").select_option(b.prefix)
    requests_total(page, "1")
    rows = panel.locator(".energy-models tbody tr")
    assert rows.count() == 1
    assert rows.nth(0).locator(".model-id").inner_text() == "demo/demo-smart"
