"""Cost, energy and CO2e of a call: exact values for known token counts, precedence, validity, estimates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from ecologits.impacts.llm import compute_llm_impacts
from ecologits.utils.range_value import RangeValue
from pytest_django import Settings

from energy.models import EnergyCoefficient
from ledger.accounting import Cost, account
from routing.models import LLMModel, Provider
from routing.selectors import ModelInfo, load_routing_config

pytestmark = pytest.mark.django_db

EARLY = datetime(2025, 1, 1, tzinfo=UTC)


def model(name: str, *, price_in: float = 1.0, price_out: float = 4.0, kwh: float | None = None) -> ModelInfo:
    provider, _ = Provider.objects.get_or_create(
        name="lab", defaults={"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}
    )
    LLMModel.objects.update_or_create(
        provider=provider,
        name=name,
        defaults={"price_in_per_m": price_in, "price_out_per_m": price_out, "energy_kwh_per_m": kwh},
    )
    return load_routing_config().models[f"lab/{name}"]


def coefficient(model_key: str, central: float, **fields: Any) -> EnergyCoefficient:
    values: dict[str, Any] = {
        "output_kwh_per_m_low": central,
        "output_kwh_per_m": central,
        "output_kwh_per_m_high": central,
        "token_basis": EnergyCoefficient.Basis.TOTAL,
        "source": "test",
        "valid_from": EARLY,
    }
    values.update(fields)
    return EnergyCoefficient.objects.create(model=model_key, **values)


def test_it_counts_every_token_with_a_total_basis_coefficient(settings: Settings) -> None:
    settings.ENERGY_GRID_G_CO2E_PER_KWH = 475.0
    row = coefficient("lab/smart", 0.30, output_kwh_per_m_low=0.18, output_kwh_per_m_high=0.48)
    cost = account(model("smart"), 1200, 300)
    # 1500 tokens x 0.30 kWh/M = 0.45 Wh; x 475 g/kWh = 0.21375 g; $1 x 1200 + $4 x 300 per million = $0.0024
    assert cost == Cost(
        cost_usd=0.0024,
        energy_wh=0.45,
        co2e_g=0.21375,
        kwh_per_m=0.30,
        estimated=False,
        energy_wh_low=0.27,
        energy_wh_high=0.72,
        co2e_g_low=0.12825,
        co2e_g_high=0.342,
        input_kwh_per_m=None,
        coefficient_id=row.pk,
        grid_g_co2e_per_kwh=475.0,
    )


def test_it_counts_output_and_input_tokens_with_their_own_coefficients_times_the_pue(settings: Settings) -> None:
    settings.ENERGY_GRID_G_CO2E_PER_KWH = 50.0
    coefficient(
        "lab/split",
        0.4,
        output_kwh_per_m_low=0.2,
        output_kwh_per_m_high=0.6,
        input_kwh_per_m_low=0.02,
        input_kwh_per_m=0.04,
        input_kwh_per_m_high=0.06,
        token_basis=EnergyCoefficient.Basis.OUTPUT,
        scope=EnergyCoefficient.Scope.GPU,
        pue=1.5,
    )
    cost = account(model("split", price_in=0.5, price_out=1.5), 2000, 500)
    # GPU scope x PUE 1.5: output 0.6 kWh/M, input 0.06 kWh/M. 500 x 0.6 + 2000 x 0.06 per million kWh = 0.42 Wh
    assert (cost.energy_wh_low, cost.energy_wh, cost.energy_wh_high) == (0.21, 0.42, 0.63)
    assert (cost.co2e_g_low, cost.co2e_g, cost.co2e_g_high) == (0.0105, 0.021, 0.0315)
    assert cost.cost_usd == 0.00175
    assert (cost.kwh_per_m, cost.input_kwh_per_m, cost.estimated) == (0.6, 0.06, False)


def test_it_leaves_input_tokens_free_with_an_output_basis_and_no_input_coefficient() -> None:
    coefficient("lab/out", 2.0, token_basis=EnergyCoefficient.Basis.OUTPUT)
    cost = account(model("out"), 10_000, 250)
    assert cost.energy_wh == 0.5  # 250 / 1e6 x 2.0 kWh x 1000


def test_it_prefers_the_exact_id_then_the_model_setting_then_the_bare_name() -> None:
    coefficient("named", 9.0)
    assert account(model("named"), 1000, 0).kwh_per_m == 9.0
    assert account(model("named", kwh=0.5), 1000, 0).kwh_per_m == 0.5
    exact = coefficient("lab/named", 0.25)
    cost = account(model("named", kwh=0.5), 1000, 0)
    assert (cost.kwh_per_m, cost.coefficient_id) == (0.25, exact.pk)


def test_it_matches_a_bare_name_at_any_provider_and_under_a_vendor_prefix() -> None:
    coefficient("llama-3.1-8b-instruct", 0.1)
    assert account(model("meta-llama/llama-3.1-8b-instruct"), 1000, 0).kwh_per_m == 0.1


def test_it_uses_the_version_valid_at_the_time_of_the_call() -> None:
    first = coefficient("lab/versioned", 0.2)
    second = coefficient("lab/versioned", 0.3, valid_from=datetime(2030, 1, 1, tzinfo=UTC))
    info = model("versioned")
    assert account(info, 1000, 0, when=datetime(2029, 12, 31, tzinfo=UTC)).coefficient_id == first.pk
    assert account(info, 1000, 0, when=datetime(2030, 1, 1, tzinfo=UTC)).coefficient_id == second.pk


def test_it_falls_through_when_every_version_is_valid_only_later(settings: Settings) -> None:
    coefficient("lab/future", 0.3, valid_from=datetime(2100, 1, 1, tzinfo=UTC))
    cost = account(model("future"), 1000, 0, when=datetime(2026, 6, 1, tzinfo=UTC))
    assert (cost.estimated, cost.kwh_per_m) == (True, settings.ENERGY_DEFAULT_KWH_PER_M)


def ecologits_kwh_per_m(params_b: float, pue: float) -> float:
    impacts = compute_llm_impacts(
        model_active_parameter_count=params_b,
        model_total_parameter_count=params_b,
        output_token_count=1_000_000,
        if_electricity_mix_adpe=0,
        if_electricity_mix_pe=0,
        if_electricity_mix_gwp=0,
        if_electricity_mix_wue=0,
        datacenter_pue=pue,
        datacenter_wue=0,
    )
    kwh = impacts.energy.value
    assert not isinstance(kwh, RangeValue)
    return float(kwh)


def test_it_estimates_an_unknown_model_from_the_size_in_its_name_and_flags_it(settings: Settings) -> None:
    settings.ENERGY_ESTIMATE_PUE_LOW, settings.ENERGY_ESTIMATE_PUE_HIGH = 1.1, 1.5
    settings.ENERGY_GRID_G_CO2E_PER_KWH = 100.0
    cost = account(model("mystery-7b-chat"), 4000, 2000)
    central = ecologits_kwh_per_m(7, 1.3)
    assert cost.estimated is True
    assert cost.coefficient_id is None
    assert cost.kwh_per_m == pytest.approx(central, rel=1e-12)
    # EcoLogits counts output tokens only: 2000 tokens; the prompt's 4000 cost no energy.
    assert cost.energy_wh == pytest.approx(2000 / 1e6 * central * 1000, abs=1e-9)
    assert cost.energy_wh_low == pytest.approx(2000 / 1e6 * ecologits_kwh_per_m(7, 1.1) * 1000, abs=1e-9)
    assert cost.energy_wh_high == pytest.approx(2000 / 1e6 * ecologits_kwh_per_m(7, 1.5) * 1000, abs=1e-9)
    assert cost.co2e_g == pytest.approx(cost.energy_wh / 1000 * 100, abs=1e-9)
    assert cost.energy_wh_low < cost.energy_wh < cost.energy_wh_high


def test_it_falls_back_to_the_default_for_a_model_of_unknown_size(settings: Settings) -> None:
    cost = account(model("mystery"), 600, 400)
    assert cost.estimated is True
    assert cost.kwh_per_m == settings.ENERGY_DEFAULT_KWH_PER_M
    assert cost.energy_wh == round(1000 / 1e6 * settings.ENERGY_DEFAULT_KWH_PER_M * 1000, 9)


def test_it_accounts_a_model_info_built_without_an_energy_profile() -> None:
    # What a caller that builds ModelInfo itself (the monitoring probes) gets: its energy_kwh_per_m applies.
    info = ModelInfo(
        pk=1,
        model_id="x/y",
        provider="x",
        name="y",
        context_window=8192,
        price_in_per_m=2.0,
        price_out_per_m=8.0,
        energy_kwh_per_m=0.5,
        rpm_budget=None,
        tpm_budget=None,
        monitor=True,
    )
    cost = account(info, 100, 100)
    assert (cost.cost_usd, cost.energy_wh, cost.estimated) == (0.001, 0.1, False)


def test_it_books_nothing_without_a_model() -> None:
    cost = account(None, 10, 0)
    assert (cost.cost_usd, cost.energy_wh, cost.co2e_g) == (0.0, 0.0, 0.0)
