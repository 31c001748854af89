"""sync_providers YAML: a model's optional ``energy:`` mapping records versioned coefficients."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from energy.models import EnergyCoefficient
from ledger.accounting import account
from routing.models import LLMModel
from routing.selectors import load_routing_config

pytestmark = pytest.mark.django_db

DOCUMENT = """
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1
    models:
      - name: gpt-4o-mini
        price_in_per_m: 0.15
        price_out_per_m: 0.60
        energy_kwh_per_m: {central}
        energy:
          low: 0.1
          high: 0.5
          input_kwh_per_m: 0.01
          token_basis: output
          scope: server
          pue: 1.2
          source: "Our own measurement, H100, vLLM"
          source_url: https://example.org/measurement
"""


def sync(tmp_path: Path, text: str) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    out = io.StringIO()
    call_command("sync_providers", str(path), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_it_records_the_coefficient_of_an_energy_mapping(tmp_path: Path) -> None:
    out = sync(tmp_path, DOCUMENT.format(central=0.3))
    assert "energy coefficients: 1 new version(s)" in out.splitlines()
    row = EnergyCoefficient.objects.get(model="openai/gpt-4o-mini")
    assert (row.output_kwh_per_m_low, row.output_kwh_per_m, row.output_kwh_per_m_high) == (0.1, 0.3, 0.5)
    assert (row.input_kwh_per_m_low, row.input_kwh_per_m, row.input_kwh_per_m_high) == (0.01, 0.01, 0.01)
    assert (row.token_basis, row.scope, row.pue, row.estimated) == ("output", "server", 1.2, False)
    assert (row.source, row.source_url) == ("Our own measurement, H100, vLLM", "https://example.org/measurement")
    assert LLMModel.objects.get(name="gpt-4o-mini").energy_kwh_per_m == 0.3  # the contract's field still holds it
    # server scope x PUE 1.2: 1000 output tokens x 0.36 kWh/M + 1000 input tokens x 0.012 kWh/M
    cost = account(load_routing_config().models["openai/gpt-4o-mini"], 1000, 1000)
    assert (cost.energy_wh, cost.coefficient_id) == (0.372, row.pk)


def test_it_is_idempotent_and_a_changed_value_is_a_new_version(tmp_path: Path) -> None:
    sync(tmp_path, DOCUMENT.format(central=0.3))
    assert "energy coefficients" not in sync(tmp_path, DOCUMENT.format(central=0.3))
    assert EnergyCoefficient.objects.count() == 1
    sync(tmp_path, DOCUMENT.format(central=0.4))
    versions = list(EnergyCoefficient.objects.filter(model="openai/gpt-4o-mini").order_by("valid_from"))
    assert [v.output_kwh_per_m for v in versions] == [0.3, 0.4]
    assert account(load_routing_config().models["openai/gpt-4o-mini"], 0, 1000).kwh_per_m == pytest.approx(0.48)


def test_a_bare_central_value_versions_a_model_that_has_coefficients(tmp_path: Path) -> None:
    sync(tmp_path, DOCUMENT.format(central=0.3))
    bare = DOCUMENT.format(central=0.25).split("        energy:")[0]
    sync(tmp_path, bare)
    latest = EnergyCoefficient.objects.filter(model="openai/gpt-4o-mini").order_by("-valid_from").first()
    assert latest is not None
    assert (latest.output_kwh_per_m, latest.token_basis, latest.source) == (
        0.25,
        "total",
        "sync_providers: energy_kwh_per_m",
    )


def test_a_bare_central_value_alone_stays_the_models_setting(tmp_path: Path) -> None:
    sync(tmp_path, DOCUMENT.format(central=0.3).split("        energy:")[0])
    assert not EnergyCoefficient.objects.exists()
    assert account(load_routing_config().models["openai/gpt-4o-mini"], 500, 500).energy_wh == 0.3


def test_it_keeps_a_valid_from_version_and_refuses_to_rewrite_it(tmp_path: Path) -> None:
    dated = DOCUMENT.format(central=0.3) + "          valid_from: 2026-01-01\n"
    sync(tmp_path, dated)
    assert EnergyCoefficient.objects.get().valid_from == datetime(2026, 1, 1, tzinfo=UTC)
    sync(tmp_path, dated)
    assert EnergyCoefficient.objects.count() == 1
    with pytest.raises(CommandError, match="already exists with other values"):
        sync(tmp_path, dated.replace("energy_kwh_per_m: 0.3", "energy_kwh_per_m: 0.35"))
    assert EnergyCoefficient.objects.get().output_kwh_per_m == 0.3


def test_it_names_every_problem_of_an_energy_mapping(tmp_path: Path) -> None:
    bad = (
        DOCUMENT.format(central=0.3)
        .replace("low: 0.1", "low: 0.4")
        .replace("scope: server", "scope: rack")
        .replace("pue: 1.2", "pue: 0.9\n          colour: green")
    )
    with pytest.raises(CommandError) as raised:
        sync(tmp_path, bad)
    where = "providers[0] (openai).models[0].energy"
    message = str(raised.value)
    assert f"{where}: unknown key 'colour'" in message
    assert f"{where}.pue: expected a number >= 1, got 0.9" in message
    assert f"{where}.scope: one of gpu, server, facility" in message
    assert not EnergyCoefficient.objects.exists()
    assert not LLMModel.objects.filter(name="gpt-4o-mini").exists()


def test_it_refuses_an_energy_mapping_without_a_central_value(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"energy: needs energy_kwh_per_m \(the central value\)"):
        sync(tmp_path, DOCUMENT.format(central=0.3).replace("        energy_kwh_per_m: 0.3\n", ""))
