"""The dashboard names a failing model "Down" with its reason, and one never probed "No data" (not both
"Unknown"), in the table and on the kanban cards."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from monitoring.tests.factories import demo, make_probe
from tests.fixtures import Fake, Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_failing_model_is_down_with_its_reason_and_an_unprobed_one_has_no_data(
    logged_in_page: Any, gateway: Gateway, fake: Fake
) -> None:
    make_probe(demo("demo-fast"), timezone.now(), last=True, status="unknown", error_type="timeout", http_status=None)
    page = logged_in_page
    page.goto(gateway.url + "/")
    page.wait_for_selector("#dashboard[data-loaded=true]")

    fast = page.locator('tr[data-model="demo/demo-fast"] .badge')
    assert (fast.inner_text(), fast.get_attribute("data-state")) == ("Down", "down")
    assert fast.get_attribute("data-status") == "unknown"  # the bucket still colours it
    assert fast.get_attribute("title") == "1 consecutive probe failure: timeout"
    smart = page.locator('tr[data-model="demo/demo-smart"] .badge')
    assert (smart.inner_text(), smart.get_attribute("title")) == ("No data", "Not probed yet")

    page.click("#view-kanban")
    cards = page.locator(".kanban-column[data-status=unknown] .model-card .state-badge")
    assert cards.all_inner_texts() == ["Down", "No data"]
