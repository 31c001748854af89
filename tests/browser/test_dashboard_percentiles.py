"""The dashboard's percentiles and answer checks, in headless Chromium at 1440 and 390 px, against the real backend:
probes over real HTTP to the fake upstream (run here through the monitoring service, with an injected clock for
the older ones), a real request through the gateway, and the figures the statistics refresh merged from both.

``SCREENSHOTS=1`` also writes the history panel with its figures to ``docs/screenshots/``."""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.services import apikey_create
from ledger.models import UsageRecord
from monitoring.selectors import stats_payload
from routing.models import LLMModel
from routing.services import routing_changed
from tests.browser.probing import probe
from tests.fixtures import Fake, Gateway
from tests.helpers import ROOT, wait_until
from tests.http import call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

FAST, SMART = "demo/demo-fast", "demo/demo-smart"
SHOTS = ROOT / "docs" / "screenshots"
WINDOWS = ("1h", "24h", "7d")
METRICS = (("ttft_ms", "TTFT"), ("total_ms", "Total"), ("tokens_per_sec", "Tokens/s"))


def duration(ms: float) -> str:
    """``Format.duration``: JavaScript rounds halves up (``Math.round``), Python's ``round`` to even."""
    if ms < 1000:
        return f"{math.floor(ms + 0.5)} ms"
    return f"{ms / 1000:.2f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"


def rate(tps: float) -> str:
    """``Format.rate``: grouped, no decimals from 100 on, one below."""
    return f"{tps:,.0f} tok/s" if tps >= 100 else f"{tps:,.1f} tok/s"


def figure(window: dict[str, Any], metric: str, q: str) -> str:
    value = window[metric][q]
    return rate(value) if metric == "tokens_per_sec" else duration(value)


@pytest.fixture
def history(gateway: Gateway, fake: Fake) -> dict[str, Any]:
    """demo-fast, marked for the tool-call and structured-output probes, probed 2 days, 3 hours and just now
    ago (its tool call ignored 3 hours ago) and called once through the gateway; demo-smart, marked for
    neither, probed just now. Returns /stats' rows by model id, as the page gets them."""
    LLMModel.objects.filter(provider__name="demo", name="demo-smart").update(
        supports_tools=False, supports_structured_output=False
    )
    routing_changed()
    start = timezone.now()
    fake.configure(**{"demo-fast": {"ttft_ms": 300, "tps": 200}})
    probe(FAST, now=lambda: start - timedelta(days=2))
    fake.configure(**{"demo-fast": {"ttft_ms": 200, "tps": 400, "tool": 0}})  # answers in words, no tool call
    probe(FAST, now=lambda: start - timedelta(hours=3))
    fake.configure(**{"demo-fast": {"ttft_ms": 50, "tps": 800}, "demo-smart": {"ttft_ms": 120, "tps": 300}})
    _, key = apikey_create(name="percentiles")
    body = {"prompt": "hi", "model": FAST, "max_tokens": 16}
    reply = call("POST", gateway.url + "/api/v1/generate", body, key=key)
    assert reply.status == 200, reply.text
    assert wait_until(lambda: UsageRecord.objects.filter(model=FAST).count() == 1)
    probe(FAST, SMART)
    return {row["model"]: row for row in stats_payload()["models"]}


def open_dashboard(page: Any, gateway: Gateway, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900 if width == 1440 else 844})
    page.goto(gateway.url + "/")
    page.wait_for_selector("#dashboard[data-loaded=true]")


@pytest.mark.parametrize("width", [1440, 390])
def test_it_shows_the_percentiles_of_three_windows_and_the_validity_of_the_answers(
    logged_in_page: Any, gateway: Gateway, history: dict[str, Any], width: int
) -> None:
    fast, smart = history[FAST], history[SMART]
    # What the statistics hold: every window's samples by source, and the rates of the answer checks.
    assert {w: fast["percentiles"][w]["samples_by_source"] for w in WINDOWS} == {
        "1h": {"probes": 1, "traffic": 1},
        "24h": {"probes": 2, "traffic": 1},
        "7d": {"probes": 3, "traffic": 1},
    }
    assert fast["validity_24h"] == {"tool_call": 50.0, "structured_output": 100.0}
    assert smart["validity_24h"] == {"tool_call": None, "structured_output": None}
    newest = datetime.fromisoformat(fast["percentiles"]["24h"]["newest_at"])
    assert {fast["percentiles"][w]["newest_at"] for w in WINDOWS} == {fast["percentiles"]["24h"]["newest_at"]}
    page = logged_in_page
    # The page's clock, three minutes after the newest sample: its freshness reads the same on every run.
    page.clock.set_fixed_time(newest + timedelta(minutes=3, seconds=10))
    open_dashboard(page, gateway, width)

    day = fast["percentiles"]["24h"]
    typical = page.locator(f'tr[data-model="{FAST}"] [data-col="ttft_p50_p95"]')
    assert typical.inner_text() == f"{figure(day, 'ttft_ms', 'p50')} / {figure(day, 'ttft_ms', 'p95')}"
    assert typical.get_attribute("title") == "\n".join(
        [
            "24 h · 3 samples (2 probes, 1 request) · newest 3 min ago",
            *(
                f"{label} " + " · ".join(f"{q} {figure(day, metric, q)}" for q in ("p50", "p95", "p99"))
                for metric, label in METRICS
            ),
        ]
    )
    assert typical.get_attribute("data-label") == "TTFT p50 / p95"
    smart_day = smart["percentiles"]["24h"]
    assert page.inner_text(f'tr[data-model="{SMART}"] [data-col="ttft_p50_p95"]') == (
        f"{figure(smart_day, 'ttft_ms', 'p50')} / {figure(smart_day, 'ttft_ms', 'p95')}"
    )
    assert (page.get_attribute(f'tr[data-model="{SMART}"] [data-col="ttft_p50_p95"]', "title") or "").startswith(
        "24 h · 1 sample (1 probe, 0 requests) · newest "
    )

    page.click(f'tr[data-model="{FAST}"]')
    panel = page.locator(f'tr.history-row[data-history-for="{FAST}"] .figures')
    assert panel.locator(".validity").inner_text() == "Tool calls valid 50 %, JSON schema valid 100 % (24 h)"
    rows = panel.locator("table.window-figures tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
    )
    windows = [fast["percentiles"][w] for w in WINDOWS]
    assert rows == [
        ["", "1 h", "24 h", "7 d"],
        ["Probes", "1", "2", "3"],
        ["Requests", "1", "1", "1"],
        ["Newest", "3 min ago", "3 min ago", "3 min ago"],
        *(
            [f"{label} {q}", *(figure(w, metric, q) for w in windows)]
            for metric, label in METRICS
            for q in ("p50", "p95", "p99")
        ),
    ]
    # The slow probe 3 hours ago is in the day's p99 but not in the last hour's.
    assert windows[0]["ttft_ms"]["p99"] < windows[1]["ttft_ms"]["p99"]
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    if width == 1440:  # every column, the new one too, fits the card
        assert page.eval_on_selector("#table-view", "card => card.scrollWidth <= card.clientWidth")
    else:  # the models' cards, and the panel's table, stay within the screen
        for right in page.eval_on_selector_all(
            ".model-row, table.window-figures", "es => es.map(e => e.getBoundingClientRect().right)"
        ):
            assert right <= width
    if os.environ.get("SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        panel.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"percentiles-{width}.png"))

    page.click(f'tr[data-model="{SMART}"]')
    smart_panel = page.locator(f'tr.history-row[data-history-for="{SMART}"] .figures')
    assert smart_panel.locator(".validity").inner_text() == "Tool calls and JSON schema: not probed"
