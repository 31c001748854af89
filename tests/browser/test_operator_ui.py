"""What an operator sees, in headless Chromium at a desktop (1440 px) and a phone (390 px) width, against the real
backend: pages without sideways scroll, tables that reflow, truncated ids with their full id on hover, figures
with their units, the history chart's time axis and bucket limits, the chat page's conversation, the admin's
breakers, chain order and keywords, ReDoc offline, the favicon and the dark-mode buttons' contrast.

``SCREENSHOTS=1`` also writes the pages at both widths to ``docs/screenshots/`` (shown in the README)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from jobs.models import Job
from ledger.models import UsageRecord
from ledger.writer import usage_records_create
from monitoring.models import Probe
from routing.models import Category, ChainEntry, CircuitBreaker, LLMModel
from routing.selectors import routing_config
from routing.services import providers_sync
from tests.browser.probing import probe
from tests.fixtures import Fake, Gateway, _stop, start_gateway
from tests.helpers import ROOT

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser,
    pytest.mark.usefixtures("plain_probes_only"),
]

DESKTOP, PHONE = 1440, 390
FAST, SMART = "demo/demo-fast", "demo/demo-smart"
LONG = "acme/meta-llama-3.1-405b-instruct-turbo-2026-12-04-long-deployment-name"
SHOTS = ROOT / "docs" / "screenshots"


def add_long_model(fake: Fake) -> None:
    providers_sync(
        document={
            "providers": [
                {
                    "name": "acme",
                    "kind": "openai_compatible",
                    "base_url": fake.url + "/v1",
                    "models": [{"name": LONG.split("/", 1)[1], "monitor": True, "energy_kwh_per_m": 0.4}],
                }
            ]
        }
    )


def book_usage(model: str, *, wh: float, low: float, high: float, co2e_g: float) -> None:
    """A usage record written as the ledger writes one, with its roll-ups (the energy panel reads their sums)."""
    record = UsageRecord(
        request_id=f"req-{model or 'none'}",
        endpoint="generate",
        model=model,
        provider=model.split("/")[0] if model else "",
        prompt_tokens=12,
        completion_tokens=30 if model else 0,
        cost_usd=Decimal("0.0012"),
        energy_wh=wh,
        energy_wh_low=low,
        energy_wh_high=high,
        co2e_g=co2e_g,
        co2e_g_low=co2e_g,
        co2e_g_high=co2e_g,
        status="ok" if model else "error",
        created_at=timezone.now(),
    )
    usage_records_create([record])


def open_dashboard(page: Any, gateway: Gateway, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900 if width == DESKTOP else 844})
    page.goto(gateway.url + "/")
    page.wait_for_selector("#dashboard[data-loaded=true]")
    page.wait_for_selector("#energy-panel[data-loaded=true]")


def no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def screenshot(page: Any, name: str, width: int) -> None:
    if os.environ.get("SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"))


def contrast_ratios(page: Any) -> dict[str, float]:
    """Each visible, enabled button's contrast (WCAG 2): its text colour against the first opaque background
    behind it, both from the computed styles."""
    return dict(
        page.evaluate(
            """() => {
      const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
      const lum = ([r, g, b]) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
      };
      const background = (el) => {
        for (let node = el; node; node = node.parentElement) {
          const c = rgb(getComputedStyle(node).backgroundColor);
          if (c.length < 4 || c[3] > 0) return c;
        }
        return [255, 255, 255];
      };
      return Array.from(document.querySelectorAll("button"))
        .filter((b) => !b.disabled && b.offsetParent !== null)
        .map((b) => {
          const [x, y] = [lum(rgb(getComputedStyle(b).color)), lum(background(b))];
          const ratio = (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
          return [b.id || b.textContent.trim(), Math.round(ratio * 100) / 100];
        });
    }"""
        )
    )


# --- the dashboard -------------------------------------------------------------------------------------------


def test_the_dashboard_fits_a_phone_and_its_tables_reflow_into_cards(
    logged_in_page: Any, gateway: Gateway, fake: Fake
) -> None:
    add_long_model(fake)
    probe(FAST, SMART, LONG)
    book_usage(LONG, wh=0.2103, low=0.2101, high=0.2104, co2e_g=0.05)
    book_usage(FAST, wh=0.0123, low=0.008, high=0.02, co2e_g=0.003)
    page = logged_in_page
    reflowed = "sel => Array.from(document.querySelectorAll(sel)).map(e => getComputedStyle(e).display)"
    label = "td => getComputedStyle(td, '::before').content"

    open_dashboard(page, gateway, DESKTOP)
    assert no_sideways_scroll(page)
    assert page.evaluate(reflowed, "tr.model-row") == ["table-row"] * 3
    # Every column fits the card: nothing to scroll to inside it either.
    assert page.eval_on_selector("#table-view", "card => card.scrollWidth <= card.clientWidth")
    assert page.evaluate(reflowed, ".energy-models tbody tr") == ["table-row"] * 2
    screenshot(page, "dashboard", DESKTOP)
    page.evaluate("document.querySelector('.energy-models').scrollIntoView({block: 'center'})")
    screenshot(page, "energy", DESKTOP)

    open_dashboard(page, gateway, PHONE)
    assert no_sideways_scroll(page)
    # Each model is a card: the header row is out of sight, every cell carries its column's name.
    assert page.evaluate(reflowed, "tr.model-row") == ["grid"] * 3
    assert page.locator("#models-table thead").bounding_box()["height"] <= 1
    cell = page.locator(f'tr[data-model="{FAST}"] [data-col="tokens_per_sec"]')
    assert cell.evaluate(label) == '"Tokens/s"'
    assert page.evaluate(reflowed, ".energy-models tbody tr") == ["grid"] * 2
    assert page.locator('.energy-models tr[data-group="demo/demo-fast"] td[data-label="Cost"]').evaluate(label) == (
        '"Cost"'
    )
    for box in page.eval_on_selector_all(
        ".model-row, .energy-models tr", "rs => rs.map(r => r.getBoundingClientRect().right)"
    ):
        assert box <= PHONE
    screenshot(page, "dashboard", PHONE)
    page.evaluate("document.querySelector('.energy-models').scrollIntoView({block: 'center'})")
    screenshot(page, "energy", PHONE)
    page.click("#view-kanban")
    assert no_sideways_scroll(page)
    columns = page.eval_on_selector_all(
        ".kanban-column", "cs => cs.map(c => Math.round(c.getBoundingClientRect().left))"
    )
    assert len(set(columns)) == 1  # stacked, one under the other
    screenshot(page, "dashboard-kanban", PHONE)
    page.click("#view-table")

    for path in ("/results/", "/chat/"):
        page.goto(gateway.url + path)
        assert no_sideways_scroll(page), path


def test_a_long_model_id_is_cut_short_with_the_full_id_on_hover(
    logged_in_page: Any, gateway: Gateway, fake: Fake
) -> None:
    add_long_model(fake)
    probe(LONG)
    book_usage(LONG, wh=0.5, low=0.4, high=0.6, co2e_g=0.1)
    page = logged_in_page
    truncated = "e => e.scrollWidth > e.clientWidth && getComputedStyle(e).textOverflow === 'ellipsis'"
    for width in (DESKTOP, PHONE):
        open_dashboard(page, gateway, width)
        table_id = page.locator(f'tr[data-model="{LONG}"] .model-id')
        assert (table_id.inner_text(), table_id.get_attribute("title")) == (LONG, LONG)
        assert table_id.evaluate(truncated), width
        energy_id = page.locator(".energy-models .model-id")
        assert energy_id.get_attribute("title") == LONG
        page.click("#view-kanban")
        card_id = page.locator(f'.model-card[data-model="{LONG}"] .model-id')
        assert card_id.get_attribute("title") == LONG
        assert card_id.evaluate(truncated), width
        page.click("#view-table")


def test_figures_carry_one_unit_system_and_ranges_print_once(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"tps": 400}})
    [fast] = probe(FAST)
    book_usage(FAST, wh=0.2102, low=0.2101, high=0.2104, co2e_g=0.05)  # every end reads "210 mWh"
    book_usage("", wh=0.0004, low=0.0004, high=0.0004, co2e_g=0.0001)  # no model answered
    page = logged_in_page
    open_dashboard(page, gateway, DESKTOP)
    assert fast.tokens_per_sec is not None
    tps = fast.tokens_per_sec
    expected = f"{tps:,.0f} tok/s" if tps >= 100 else f"{tps:,.1f} tok/s"
    assert page.inner_text(f'tr[data-model="{FAST}"] [data-col="tokens_per_sec"]') == expected
    assert fast.energy_wh is not None and fast.energy_wh < 1
    assert page.inner_text(f'tr[data-model="{FAST}"] [data-col="energy_wh"]').endswith(" mWh")
    # The one formatter every page uses: thousands separators, the unit chosen by size.
    formatted = page.evaluate(
        "[Format.rate(12345.6), Format.rate(42.25), Format.energy(0.21), Format.energy(2.5), Format.energy(1234.5),"
        " Format.energyRange(0.2101, 0.2102, 0.2104).range, Format.energyRange(0.1, 0.2, 0.3).range]"
    )
    assert formatted == ["12,346 tok/s", "42.3 tok/s", "210 mWh", "2.5 Wh", "1.23 kWh", "210 mWh", "100–300 mWh"]
    row = page.locator('.energy-models tr[data-group="demo/demo-fast"]')
    assert row.locator('td[data-label="Energy"]').inner_text() == "210 mWh"  # no "210–210 mWh" under it
    assert row.locator(".range").count() == 0
    # The row of usage no model answered is named and explained, not "(none)".
    unnamed = page.locator('.energy-models tr[data-group=""] .no-model')
    assert unnamed.inner_text() == "No model answered"
    assert (unnamed.get_attribute("title") or "").startswith("Requests that ended before any model answered")
    assert "(none)" not in page.inner_text("#energy-panel")
    energies = page.eval_on_selector_all(".energy-models td[data-label=Energy]", "tds => tds.map(t => t.innerText)")
    assert all(re.fullmatch(r"[\d.,]+ (mWh|Wh|kWh)(\n.*)?", text) for text in energies), energies


def test_the_history_chart_spans_its_window_with_bucket_limits_and_failures(
    logged_in_page: Any, gateway: Gateway, fake: Fake
) -> None:
    start = timezone.now()
    for hours_ago in (20, 9, 2):
        # mypy cannot infer a lambda whose default binds the loop variable (misc).
        probe(FAST, now=lambda h=hours_ago: start - timedelta(hours=h))  # type: ignore[misc]
    model = LLMModel.objects.get(provider__name="demo", name="demo-fast")
    # A slow probe (40 s, in the congestion bucket) as the monitoring service stores one.
    Probe.objects.create(
        model=model, status="congestion", ok=True, ttfb_ms=2000, total_ms=40_000, checked_at=start - timedelta(hours=5)
    )
    fake.configure(**{"demo-fast": {"status": 502}})
    probe(FAST, now=lambda: start - timedelta(hours=1))
    page = logged_in_page
    for width in (DESKTOP, PHONE):
        open_dashboard(page, gateway, width)
        page.click(f'tr[data-model="{FAST}"]')
        chart = page.locator("svg.history-chart")
        chart.wait_for()
        assert chart.get_attribute("data-points") == "5"
        window_start = datetime.fromisoformat(chart.get_attribute("data-window-start"))
        window_end = datetime.fromisoformat(chart.get_attribute("data-window-end"))
        assert window_end - window_start == timedelta(hours=24)
        assert abs(window_end - timezone.now()) < timedelta(minutes=5)
        ticks = page.eval_on_selector_all(
            "svg.history-chart .time-axis text", "ts => ts.map(t => [Number(t.dataset.t), t.textContent])"
        )
        labels = [text for _, text in ticks]
        assert len(labels) == len(set(labels)) >= 4, labels  # no label twice
        times = [datetime.fromtimestamp(t / 1000, tz=window_start.tzinfo) for t, _ in ticks]
        assert all(window_start < t < window_end for t in times)
        steps = {b - a for a, b in zip(times, times[1:], strict=False)}
        assert len(steps) == 1 and next(iter(steps)) in {timedelta(hours=h) for h in (3, 6)}, steps
        # The bucket limits up to the slowest probe's bucket, from the settings, drawn as lines.
        limits = page.eval_on_selector_all(
            "svg.history-chart .bucket-limits line", "ls => ls.map(l => [l.dataset.bucket, Number(l.dataset.ms)])"
        )
        assert limits == [
            ["smooth", django_settings.MONITORING_SMOOTH_MAX_S * 1000],
            ["available", django_settings.MONITORING_AVAILABLE_MAX_S * 1000],
            ["congestion", django_settings.MONITORING_CONGESTION_MAX_S * 1000],
        ]
        assert [line.text_content() for line in page.locator("svg.history-chart .bucket-limits text").all()] == [
            "Smooth ≤ 8.50 s",
            "Available ≤ 35.0 s",
            "Congestion ≤ 50.0 s",
        ]
        marks = page.locator("svg.history-chart .error-mark")
        assert marks.count() == 1
        assert " · failed · HTTP 502" in (marks.locator("title").text_content() or "")
        assert page.locator("svg.history-chart .error-band").count() == 1
        assert no_sideways_scroll(page)
        page.evaluate("document.querySelector('tr.history-row').scrollIntoView({block: 'center'})")
        screenshot(page, "history", width)
        page.click(f'tr[data-model="{FAST}"]')


# --- the chat page -------------------------------------------------------------------------------------------


def test_the_chat_page_keeps_the_conversation_and_locks_send_while_a_reply_streams(
    logged_in_page: Any, gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    fake.configure(**{"demo-smart": {"tps": 8}})  # 8 tokens over about a second: slow enough to watch
    page = logged_in_page
    page.set_viewport_size({"width": PHONE, "height": 844})
    page.goto(gateway.url + "/chat/")
    assert page.inner_text("#demo-banner").startswith("Demo mode: no real provider configured.")
    options = page.eval_on_selector_all("#route option", "os => os.map(o => o.value)")
    categories = sorted(Category.objects.values_list("name", flat=True))
    assert options == ["", *[f"category:{name}" for name in categories], f"model:{FAST}", f"model:{SMART}"]
    page.select_option("#route", f"model:{SMART}")
    page.fill("#max-tokens", "8")

    page.fill("#prompt", "first question")
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-state=streaming]", timeout=20_000)
    assert page.input_value("#prompt") == ""
    assert page.is_disabled("#send")
    page.wait_for_selector(".msg.assistant[data-state=complete]", timeout=20_000)
    assert page.is_enabled("#send")
    first = page.inner_text(".msg.assistant")

    page.fill("#prompt", "and a follow-up")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".msg.assistant >> nth=1")
    assert page.is_disabled("#send")
    page.wait_for_function(
        "document.querySelectorAll('.msg.assistant[data-state=complete]').length === 2", timeout=20_000
    )
    assert page.is_enabled("#send")
    jobs = list(Job.objects.order_by("created_at"))
    assert [job.request.get("model") for job in jobs] == [SMART, SMART]
    assert jobs[1].request["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": first},
    ]
    # The model was sent the whole conversation, in order.
    last = fake.stats()["last"]
    assert isinstance(last, dict)
    assert [(m["role"], m["content"]) for m in last["demo-smart"]["messages"]] == [
        ("user", "first question"),
        ("assistant", first),
        ("user", "and a follow-up"),
    ]
    assert page.eval_on_selector_all(".msg", "ms => ms.map(m => m.className)") == [
        "msg user",
        "msg assistant",
        "msg user",
        "msg assistant",
    ]
    meta = page.locator(".meta").nth(1).inner_text()
    assert re.fullmatch(r"demo/demo-smart · [\d,]+ tokens · \$[\d.]+ · [\d.,]+ (mWh|Wh) · [\d.]+s", meta), meta
    assert no_sideways_scroll(page)
    screenshot(page, "chat", PHONE)
    page.set_viewport_size({"width": DESKTOP, "height": 900})
    screenshot(page, "chat", DESKTOP)
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0


# --- the admin -----------------------------------------------------------------------------------------------


def test_the_breakers_list_shows_every_model_and_resets_the_chosen_ones(
    logged_in_page: Any, gateway: Gateway, fake: Fake
) -> None:
    smart = LLMModel.objects.get(provider__name="demo", name="demo-smart")
    CircuitBreaker.objects.create(
        model=smart, state="open", consecutive_failures=3, opened_at=1.0, last_error="HTTP 503"
    )
    assert CircuitBreaker.objects.count() == 1
    page = logged_in_page
    page.goto(gateway.url + "/admin/routing/circuitbreaker/")
    rows = page.eval_on_selector_all(
        "#result_list tbody tr",
        "rs => rs.map(r => [r.querySelector('.field-model').innerText, r.querySelector('.field-state').innerText])",
    )
    chat_models = LLMModel.objects.filter(kind=LLMModel.Kind.CHAT).select_related("provider")
    expected = {str(m): "Closed" for m in chat_models}
    expected[str(smart)] = "Open"
    assert sorted(expected) == [FAST, SMART]  # the chat models (demo-embed has no breaker)
    assert dict(rows) == expected and len(rows) == len(expected)
    page.check(f'#result_list tbody tr:has-text("{smart}") input.action-select')
    page.select_option("select[name=action]", "reset_breakers")
    page.click("button[name=index]")
    assert page.inner_text("ul.messagelist") == "1 breaker(s) reset."
    assert CircuitBreaker.objects.get(model=smart).state == "closed"
    assert set(CircuitBreaker.objects.values_list("state", flat=True)) == {"closed"}


@pytest.fixture
def admin_on_own_server(browser: Any, seeded: Fake) -> Iterator[tuple[Any, Gateway]]:
    """A page logged in to the admin of a server started for this test. An admin save records a LogEntry
    with the model's content type id, which each process caches; the test database's flush between tests
    renumbers the content types, so the session's long-running server would write a stale id (a deployed
    server never sees its content types renumbered)."""
    from django.contrib.auth import get_user_model

    server = start_gateway()
    get_user_model().objects.create_superuser("sortable-admin", "", "sortable-password-123")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.url + "/admin/login/")
        page.fill("#id_username", "sortable-admin")
        page.fill("#id_password", "sortable-password-123")
        page.click("input[type=submit]")
        page.wait_for_url(server.url + "/admin/")
        yield page, server
    finally:
        context.close()
        _stop(server.proc)


def test_a_category_chain_is_reordered_by_drag_and_drop_and_keywords_are_a_list(
    admin_on_own_server: tuple[Any, Gateway],
) -> None:
    category = Category.objects.create(name="writing", keywords=["essay", "poem"])
    fast = LLMModel.objects.get(provider__name="demo", name="demo-fast")
    smart = LLMModel.objects.get(provider__name="demo", name="demo-smart")
    ChainEntry.objects.create(category=category, model=fast, position=1)
    ChainEntry.objects.create(category=category, model=smart, position=2)
    page, server = admin_on_own_server
    page.set_viewport_size({"width": DESKTOP, "height": 900})
    page.goto(server.url + f"/admin/routing/category/{category.pk}/change/")
    assert page.input_value("#id_keywords") == "essay\npoem"
    page.fill("#id_keywords", "Essay, sonnet\n  short story \n\npoem")
    handles = page.locator("#chain-group tbody tr.has_original td.original p")
    assert handles.count() == 2
    handles.nth(1).drag_to(page.locator("#chain-group tbody tr.has_original").nth(0))
    page.click("input[name=_save]")
    page.wait_for_selector("ul.messagelist")
    category.refresh_from_db()
    assert category.keywords == ["essay", "poem", "short story", "sonnet"]
    assert list(category.chain.order_by("position").values_list("model__name", flat=True)) == [
        "demo-smart",
        "demo-fast",
    ]
    assert routing_config.get(recheck=True).categories["writing"].chain == (SMART, FAST)


# --- ReDoc, the favicon, contrast --------------------------------------------------------------------------


def test_redoc_is_served_entirely_by_the_server(browser: Any, gateway: Gateway) -> None:
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(gateway.url + "/redoc/")
    page.wait_for_selector(".api-content h1", timeout=30_000)
    page.wait_for_load_state("networkidle")
    html = page.content()
    assert "fonts.googleapis" not in html and "fonts.gstatic" not in html
    elsewhere = [url for url in requests if not url.startswith((gateway.url + "/", "data:", "blob:"))]
    assert elsewhere == []
    assert gateway.url + "/api/schema/" in requests
    fonts = page.evaluate("Array.from(document.fonts).map(f => f.family)")
    assert fonts == []  # no web font was declared, let alone fetched
    context.close()


def test_every_page_has_a_favicon(logged_in_page: Any, gateway: Gateway) -> None:
    page = logged_in_page
    for path in ("/", "/chat/", "/redoc/"):
        page.goto(gateway.url + path)
        href = page.get_attribute("link[rel=icon]", "href")
        assert href is not None, path
        response = page.request.get(gateway.url + href if href.startswith("/") else href)
        assert (response.status, response.headers["content-type"]) == (200, "image/svg+xml"), path
    response = page.request.get(gateway.url + "/favicon.ico")  # what the admin's pages get
    assert (response.status, response.headers["content-type"]) == (200, "image/svg+xml")
    assert response.text().startswith("<svg")


def test_dark_mode_buttons_have_at_least_4_5_to_1_contrast(logged_in_page: Any, gateway: Gateway, fake: Fake) -> None:
    probe(FAST)
    page = logged_in_page
    open_dashboard(page, gateway, DESKTOP)
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.classList.contains('dark')")
    ratios = contrast_ratios(page)
    assert {"refresh", "view-table", "view-kanban", "theme-toggle", "24 h", "7 days"} <= set(ratios), ratios
    assert min(ratios.values()) >= 4.5, ratios
    screenshot(page, "dashboard-dark", DESKTOP)
    page.goto(gateway.url + "/chat/")
    ratios = contrast_ratios(page)
    assert "send" in ratios and min(ratios.values()) >= 4.5, ratios
