"""Seeded coefficients: the demo models and well-known models, with sources; idempotent."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from energy.models import EnergyCoefficient
from energy.seed import ESTIMATED, SEED_VALID_FROM, seed_defaults
from ledger.accounting import account
from routing.selectors import load_routing_config

pytestmark = pytest.mark.django_db


def test_it_seeds_the_demo_and_well_known_models_with_their_sources_once() -> None:
    out = io.StringIO()
    call_command("seed_defaults", stdout=out)
    assert "energy: 17 coefficients created" in out.getvalue().splitlines()
    assert seed_defaults() == "already seeded"
    rows = {row.model: row for row in EnergyCoefficient.objects.all()}
    assert set(rows) == {"demo/demo-fast", "demo/demo-smart", "gpt-4o", *(name for name, *_ in ESTIMATED)}
    assert all(row.source and row.valid_from == SEED_VALID_FROM for row in rows.values())
    assert (rows["gpt-4o"].output_kwh_per_m, rows["gpt-4o"].estimated) == (1.06, False)
    assert rows["gpt-4o-mini"].estimated is True
    assert rows["gpt-4o-mini"].source.startswith("Estimated with EcoLogits 0.11.3 from 8-28B active parameters")
    assert all(r.output_kwh_per_m_low <= r.output_kwh_per_m <= r.output_kwh_per_m_high for r in rows.values())


def test_the_demo_models_use_their_seeded_ranges() -> None:
    call_command("seed_defaults", stdout=io.StringIO())
    cost = account(load_routing_config().models["demo/demo-fast"], 600, 400)
    assert (cost.energy_wh_low, cost.energy_wh, cost.energy_wh_high) == (0.03, 0.05, 0.08)
    assert cost.estimated is False
