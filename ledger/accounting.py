"""Cost, energy and carbon of one call, from the model's prices and its energy coefficient.

energy_wh = tokens / 1e6 × kWh per million tokens × 1000, over the coefficient's token basis (output tokens
with the output coefficient, input tokens with the input one when there is one; or every token with one
value); co2e_g = energy_wh / 1000 × grid gCO2e/kWh (``ENERGY_GRID_G_CO2E_PER_KWH``); cost_usd from the prices.
Low and high come from the coefficient's range. Which coefficient applies is decided when the routing
snapshot loads (``energy.selectors.energy_profiles``), so this does no I/O and is safe on the event loop.
The monitoring app accounts its probes with the same function; the ledger copies the result onto the usage
record (``Cost.usage_fields``), so a record keeps how its call was accounted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypedDict

from django.conf import settings

from .coefficients import BASIS_TOTAL, Coefficient, EnergyProfile, Range, footprint
from .estimation import estimate


class PricedModel(Protocol):
    """What accounting reads of a model: ``routing.selectors.ModelInfo``, from the routing snapshot."""

    @property
    def provider(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def price_in_per_m(self) -> float: ...
    @property
    def price_out_per_m(self) -> float: ...
    @property
    def energy_kwh_per_m(self) -> float | None: ...
    @property
    def energy(self) -> EnergyProfile | None: ...


class AccountedFields(TypedDict):
    """The ``UsageRow`` fields that copy how a call was accounted."""

    cost_usd: float
    energy_wh: float
    co2e_g: float
    energy_kwh_per_m: float
    energy_input_kwh_per_m: float | None
    energy_coefficient_id: int | None
    energy_estimated: bool
    energy_wh_low: float
    energy_wh_high: float
    co2e_g_low: float
    co2e_g_high: float
    grid_g_co2e_per_kwh: float | None


@dataclass(frozen=True, slots=True)
class Cost:
    cost_usd: float
    energy_wh: float
    co2e_g: float
    kwh_per_m: float  # the output (or all-token) coefficient used, central, facility scope
    estimated: bool
    energy_wh_low: float = 0.0
    energy_wh_high: float = 0.0
    co2e_g_low: float = 0.0
    co2e_g_high: float = 0.0
    input_kwh_per_m: float | None = None
    coefficient_id: int | None = None
    grid_g_co2e_per_kwh: float | None = None

    def usage_fields(self) -> AccountedFields:
        """The ``UsageRow`` fields that copy how this call was accounted."""
        return {
            "cost_usd": self.cost_usd,
            "energy_wh": self.energy_wh,
            "co2e_g": self.co2e_g,
            "energy_kwh_per_m": self.kwh_per_m,
            "energy_input_kwh_per_m": self.input_kwh_per_m,
            "energy_coefficient_id": self.coefficient_id,
            "energy_estimated": self.estimated,
            "energy_wh_low": self.energy_wh_low,
            "energy_wh_high": self.energy_wh_high,
            "co2e_g_low": self.co2e_g_low,
            "co2e_g_high": self.co2e_g_high,
            "grid_g_co2e_per_kwh": self.grid_g_co2e_per_kwh,
        }


NO_MODEL = Cost(0.0, 0.0, 0.0, 0.0, True)


def model_setting_coefficient(kwh_per_m: float) -> Coefficient:
    """A model's own ``energy_kwh_per_m`` (sync_providers YAML, routing admin): one value for every token."""
    return Coefficient(
        output=Range.single(kwh_per_m), token_basis=BASIS_TOTAL, source="the model's energy_kwh_per_m setting"
    )


def coefficient_for(model: PricedModel, when: datetime | None = None) -> Coefficient:
    """The coefficient that applies to ``model`` at ``when`` (now by default)."""
    found = model.energy.at(when or datetime.now(UTC)) if model.energy is not None else None
    if found is not None:
        return found
    if model.energy is None and model.energy_kwh_per_m is not None:  # a ModelInfo built without its profile
        return model_setting_coefficient(model.energy_kwh_per_m)
    return estimate(model.provider, model.name)


def account(
    model: PricedModel | None, prompt_tokens: int, completion_tokens: int, *, when: datetime | None = None
) -> Cost:
    if model is None:
        return NO_MODEL
    coefficient = coefficient_for(model, when)
    result = footprint(
        coefficient,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        price_in_per_m=model.price_in_per_m,
        price_out_per_m=model.price_out_per_m,
        grid_g_co2e_per_kwh=settings.ENERGY_GRID_G_CO2E_PER_KWH,
    )
    return Cost(
        cost_usd=result.cost_usd,
        energy_wh=result.energy_wh.central,
        co2e_g=result.co2e_g.central,
        kwh_per_m=coefficient.output.central,
        estimated=coefficient.estimated,
        energy_wh_low=result.energy_wh.low,
        energy_wh_high=result.energy_wh.high,
        co2e_g_low=result.co2e_g.low,
        co2e_g_high=result.co2e_g.high,
        input_kwh_per_m=coefficient.input.central if coefficient.input is not None else None,
        coefficient_id=coefficient.id,
        grid_g_co2e_per_kwh=result.grid_g_co2e_per_kwh,
    )
