"""The probe log at /results/ in headless Chromium, against the real /api/v1/monitoring/results."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from monitoring.models import Probe
from routing.models import LLMModel
from routing.services import routing_changed
from tests.browser.probing import probe
from tests.fixtures import ARTIFACTS, Fake, Gateway

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser,
    pytest.mark.usefixtures("plain_probes_only"),
]

FAST, SMART = "demo/demo-fast", "demo/demo-smart"


def shown(page: Any) -> list[str]:
    page.wait_for_selector("#results-page[data-loaded=true]")
    return list(
        page.eval_on_selector_all(
            "#results-body tr.probe-row", "rows => rows.map(r => r.dataset.model + ':' + r.dataset.status)"
        )
    )


def test_the_probe_log_lists_probes_newest_first_and_filters_them(
    logged_in_page: Any, gateway: Gateway, fake: Fake
) -> None:
    start = timezone.now()
    probe(FAST, SMART, now=lambda: start - timedelta(hours=3))
    fake.configure(**{"demo-smart": {"status": 502}})
    [fast, smart] = probe(FAST, SMART)
    page = logged_in_page
    page.goto(gateway.url + "/results/")
    newest_first = Probe.objects.select_related("model__provider").order_by("-checked_at", "-id")
    assert shown(page) == [f"{p.model.model_id}:{p.status}" for p in newest_first]
    assert sorted(shown(page)[:2]) == [f"{FAST}:smooth", f"{SMART}:unknown"]
    assert page.inner_text("#page-info") == "1–4 of 4 probes"
    failed = page.locator(f'#results-body tr[data-id="{smart.pk}"]')
    assert failed.locator("td").nth(4).inner_text() == "502"
    assert smart.error_type and smart.error
    error = page.locator(f'#results-body tr.probe-error[data-for="{smart.pk}"]')
    assert error.inner_text() == f"{smart.error_type}: {smart.error}"
    assert page.locator("#results-body tr.probe-error").count() == 1
    assert failed.locator(".badge").inner_text() == "Unknown"
    assert page.locator(f'#results-body tr[data-id="{fast.pk}"] td').nth(8).inner_text() == (
        f"{fast.prompt_tokens} / {fast.completion_tokens}"
    )

    page.select_option("#filter-bucket", "unknown")
    assert shown(page) == [f"{SMART}:unknown"]
    assert page.url == gateway.url + "/results/?bucket=unknown"
    page.reload()  # the filters live in the address
    assert shown(page) == [f"{SMART}:unknown"]
    assert page.input_value("#filter-bucket") == "unknown"

    page.click("#clear-filters")
    page.wait_for_function("document.querySelectorAll('#results-body tr.probe-row').length === 4")
    page.select_option("#filter-model", FAST)
    assert shown(page) == [f"{FAST}:smooth", f"{FAST}:smooth"]
    page.select_option("#filter-since", "1h")  # the probe of three hours ago drops out
    assert shown(page) == [f"{FAST}:smooth"]
    assert page.inner_text("#page-info") == "1 of 1 probe"
    page.select_option("#filter-model", "")
    page.select_option("#filter-provider", "demo")
    assert len(shown(page)) == 2
    assert page.url == gateway.url + "/results/?provider=demo&since=1h"


def test_the_probe_log_pages_through_older_probes(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    start = timezone.now()
    for minutes_ago in (30, 20, 10):
        fake.configure(**{"demo-smart": {"status": 503} if minutes_ago == 20 else {"ttft_ms": 150}})
        # mypy cannot infer a lambda whose default binds the loop variable (misc).
        probe(FAST, SMART, now=lambda m=minutes_ago: start - timedelta(minutes=m))  # type: ignore[misc]
    page = logged_in_page
    page.goto(gateway.url + "/results/?page_size=4")
    first = shown(page)
    assert len(first) == 4
    assert page.inner_text("#page-info") == "1–4 of 6 probes"
    assert page.is_disabled("#prev") and page.is_enabled("#next")
    page.click("#next")
    page.wait_for_function("document.getElementById('page-info').textContent === '5–6 of 6 probes'")
    assert len(shown(page)) == 2
    assert page.url == gateway.url + "/results/?page=2&page_size=4"
    assert page.is_enabled("#prev") and page.is_disabled("#next")
    times = page.eval_on_selector_all("#results-body tr.probe-row", "rows => rows.map(r => r.dataset.id)")
    oldest = Probe.objects.order_by("checked_at", "id")[:2]
    assert sorted(times) == sorted(str(p.pk) for p in oldest)
    page.click("#prev")
    page.wait_for_function("document.getElementById('page-info').textContent === '1–4 of 6 probes'")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "results.png"), full_page=True)


def test_the_probe_log_names_the_kind_of_a_tool_call_or_structured_output_probe(
    logged_in_page: Any, gateway: Gateway, fake: Fake
) -> None:
    LLMModel.objects.filter(name="demo-fast").update(supports_tools=True, supports_structured_output=True)
    routing_changed()
    probe(FAST)
    page = logged_in_page

    page.goto(gateway.url + "/results/")
    shown(page)

    rows = page.eval_on_selector_all(
        "#results-body tr.probe-row",
        "rows => rows.map(r => [r.dataset.kind, (r.querySelector('.probe-kind') || {}).textContent || null])",
    )
    assert sorted(rows, key=lambda row: row[0]) == [
        ["stream", None],
        ["structured_output", "structured output"],
        ["tool_call", "tool call"],
    ]
