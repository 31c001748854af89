"""Energy over real HTTP: every response's meta, the usage record's copy of the coefficient, history kept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from accounts.services import apikey_create
from energy.models import EnergyCoefficient
from energy.seed import seed_defaults
from energy.services import energy_changed
from ledger.estimation import estimate
from ledger.models import UsageRecord
from routing.models import LLMModel, Provider
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import call, sse_events

pytestmark = pytest.mark.django_db(transaction=True)


def usage_row(request_id: str) -> UsageRecord:
    assert wait_until(lambda: UsageRecord.objects.filter(request_id=request_id).exists(), timeout=10)
    return UsageRecord.objects.get(request_id=request_id)


def generate(gateway: Gateway, raw: str, request_id: str, **body: Any) -> dict[str, Any]:
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate",
        {"prompt": "Fix this python function", "max_tokens": 5, **body},
        key=raw,
        headers={"X-Request-ID": request_id},
    )
    assert reply.status == 200, reply.text
    return dict(reply.json()["meta"])


def wh(tokens: int, kwh_per_m: float) -> float:
    return round(tokens / 1e6 * kwh_per_m * 1000, 9)


def g(energy_wh: float, grid: float = 475.0) -> float:
    return round(energy_wh / 1000 * grid, 9)


def test_it_tells_the_cost_energy_and_carbon_and_copies_the_coefficient(gateway: Gateway, fake: Fake) -> None:
    seed_defaults()
    coefficient = EnergyCoefficient.objects.get(model="demo/demo-smart")
    _, raw = apikey_create(name="k")
    meta = generate(gateway, raw, "req-energy-1")
    tokens = meta["tokens_used"]
    assert meta["model"] == "demo/demo-smart"
    assert meta["completion_tokens"] == 5
    # demo-smart: 0.18 / 0.30 / 0.48 kWh per million tokens (every token), 475 g/kWh, $1 in / $4 out per million
    assert (meta["energy_wh_low"], meta["energy_wh"], meta["energy_wh_high"]) == (
        wh(tokens, 0.18),
        wh(tokens, 0.30),
        wh(tokens, 0.48),
    )
    assert meta["co2e_g"] == g(wh(tokens, 0.30))
    assert meta["cost_usd"] == round((meta["prompt_tokens"] * 1.0 + 5 * 4.0) / 1e6, 10)
    assert meta["energy_estimated"] is False
    assert not any(key.startswith("_") for key in meta)

    row = usage_row("req-energy-1")
    assert (row.energy_kwh_per_m, row.energy_input_kwh_per_m, row.energy_coefficient_id) == (0.30, None, coefficient.pk)
    assert (row.energy_wh_low, row.energy_wh, row.energy_wh_high) == (
        meta["energy_wh_low"],
        meta["energy_wh"],
        meta["energy_wh_high"],
    )
    assert (row.co2e_g_low, row.co2e_g, row.co2e_g_high) == (
        g(wh(tokens, 0.18)),
        g(wh(tokens, 0.30)),
        g(wh(tokens, 0.48)),
    )
    assert (row.energy_estimated, row.grid_g_co2e_per_kwh) == (False, 475.0)


def test_a_new_coefficient_applies_to_new_requests_and_leaves_history_alone(gateway: Gateway, fake: Fake) -> None:
    seed_defaults()
    _, raw = apikey_create(name="k")
    first = generate(gateway, raw, "req-history-1")
    before = usage_row("req-history-1")

    newer = EnergyCoefficient.objects.create(
        model="demo/demo-smart",
        output_kwh_per_m_low=0.5,
        output_kwh_per_m=0.6,
        output_kwh_per_m_high=0.7,
        token_basis=EnergyCoefficient.Basis.TOTAL,
        source="a newer measurement",
        valid_from=datetime.now(UTC),
    )
    energy_changed()
    second = generate(gateway, raw, "req-history-2")
    after = usage_row("req-history-2")

    assert second["energy_wh"] == wh(second["tokens_used"], 0.6)
    assert (after.energy_kwh_per_m, after.energy_coefficient_id) == (0.6, newer.pk)
    before.refresh_from_db()
    assert (before.energy_kwh_per_m, before.energy_wh) == (0.30, first["energy_wh"])

    staff, staff_raw = apikey_create(name="staff", is_staff=True)
    reply = call("GET", gateway.url + "/api/v1/energy/summary?group_by=model", key=staff_raw)
    assert reply.status == 200, reply.text
    [row] = reply.json()["rows"]
    assert row["group"] == "demo/demo-smart"
    assert row["requests"] == 2
    assert row["energy_wh"] == round(first["energy_wh"] + second["energy_wh"], 9)


def test_it_estimates_a_model_without_a_coefficient_and_flags_it(gateway: Gateway, fake: Fake) -> None:
    LLMModel.objects.create(provider=Provider.objects.get(name="demo"), name="mystery-7b", price_out_per_m=2)
    routing_changed()
    _, raw = apikey_create(name="k")
    meta = generate(gateway, raw, "req-estimated-1", model="demo/mystery-7b")
    expected = estimate("openai_compatible", "mystery-7b")  # EcoLogits, 7B parameters, output tokens only
    assert meta["model"] == "demo/mystery-7b"
    assert meta["energy_estimated"] is True
    assert meta["energy_wh"] == wh(5, expected.output.central)
    assert (meta["energy_wh_low"], meta["energy_wh_high"]) == (wh(5, expected.output.low), wh(5, expected.output.high))
    assert meta["cost_usd"] == round(5 * 2 / 1e6, 10)
    row = usage_row("req-estimated-1")
    assert (row.energy_estimated, row.energy_coefficient_id) == (True, None)
    assert row.energy_kwh_per_m == expected.output.central


def test_a_stream_ends_with_the_same_energy_meta(gateway: Gateway, fake: Fake) -> None:
    seed_defaults()
    _, raw = apikey_create(name="k")
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate",
        {"prompt": "hello there", "max_tokens": 4, "stream": True},
        key=raw,
    )
    assert reply.status == 200, reply.text
    complete = sse_events(reply)[-1]
    assert complete["type"] == "complete"
    meta = complete["meta"]
    assert meta["model"] == "demo/demo-fast"
    assert (meta["energy_wh_low"], meta["energy_wh"], meta["energy_wh_high"]) == (
        wh(meta["tokens_used"], 0.03),
        wh(meta["tokens_used"], 0.05),
        wh(meta["tokens_used"], 0.08),
    )
    assert meta["energy_estimated"] is False


def test_an_openai_compatible_answer_tells_its_cost_energy_and_carbon_in_headers(gateway: Gateway, fake: Fake) -> None:
    seed_defaults()
    _, raw = apikey_create(name="k")
    reply = call(
        "POST",
        gateway.url + "/v1/chat/completions",
        {"model": "demo/demo-smart", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        key=raw,
        headers={"X-Request-ID": "req-openai-energy"},
    )
    assert reply.status == 200, reply.text
    usage = reply.json()["usage"]
    row = usage_row("req-openai-energy")
    assert float(reply.headers["x-spignos-energy-wh"]) == wh(usage["total_tokens"], 0.30) == row.energy_wh
    assert float(reply.headers["x-spignos-co2e-g"]) == g(row.energy_wh) == row.co2e_g
    assert float(reply.headers["x-spignos-cost-usd"]) == round(
        (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 4.0) / 1e6, 10
    )
