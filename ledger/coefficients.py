"""The energy, carbon and cost of one call, from a coefficient and token counts: pure arithmetic, no Django.

A coefficient is kWh per million tokens as low / central / high, already at facility scope (a GPU-only or
server-only value has been multiplied by its PUE). Its token basis says which tokens it counts:

- ``total``: the output coefficient applies to every token, input and output (``energy_kwh_per_m`` in YAML);
- ``output``: the output coefficient applies to output tokens, and the input coefficient, when there is one,
  to input tokens (with none, input tokens are taken as free, as EcoLogits does).

energy_wh = tokens / 1e6 × kWh/M × 1000 for each part; co2e_g = energy_wh / 1000 × grid gCO2e/kWh;
cost_usd = (input tokens × input price + output tokens × output price) / 1e6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

BASIS_OUTPUT = "output"
BASIS_TOTAL = "total"

# Results are rounded so that a row written and a row read back compare equal, far below any real precision.
ENERGY_DECIMALS = 9
COST_DECIMALS = 10


@dataclass(frozen=True, slots=True)
class Range:
    low: float
    central: float
    high: float

    @classmethod
    def single(cls, value: float) -> Range:
        return cls(value, value, value)

    def scaled(self, factor: float) -> Range:
        # Rounded so that 0.4 kWh/M x PUE 1.5 is copied as 0.6, not 0.6000000000000001.
        return Range(*(round(value * factor, 12) for value in (self.low, self.central, self.high)))


@dataclass(frozen=True, slots=True)
class Coefficient:
    """kWh per million tokens at facility scope, and where it comes from."""

    output: Range
    input: Range | None = None
    token_basis: str = BASIS_TOTAL
    estimated: bool = False
    source: str = ""
    # The EnergyCoefficient row it was read from; None for a model's own value or an estimate made on the fly.
    id: int | None = None
    valid_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class EnergyProfile:
    """Every coefficient that may apply to one model, by precedence tier, each tier's versions oldest first.

    ``at(when)`` is the newest version valid at ``when`` in the first tier that has one, so a coefficient
    given a future valid-from takes over at that moment without anyone reloading anything.
    """

    tiers: tuple[tuple[Coefficient, ...], ...]

    def at(self, when: datetime) -> Coefficient | None:
        for tier in self.tiers:
            valid = [c for c in tier if c.valid_from is None or c.valid_from <= when]
            if valid:
                return valid[-1]
        return None


@dataclass(frozen=True, slots=True)
class Footprint:
    cost_usd: float
    energy_wh: Range
    co2e_g: Range
    grid_g_co2e_per_kwh: float


def _tokens_wh(tokens: int, kwh_per_m: float) -> float:
    return tokens / 1_000_000 * kwh_per_m * 1000


def energy_wh(coefficient: Coefficient, prompt_tokens: int, completion_tokens: int) -> Range:
    if coefficient.token_basis == BASIS_TOTAL:
        out_tokens, in_tokens = prompt_tokens + completion_tokens, 0
    else:
        out_tokens, in_tokens = completion_tokens, prompt_tokens
    values = []
    for pick in (0, 1, 2):
        wh = _tokens_wh(out_tokens, _pick(coefficient.output, pick))
        if coefficient.input is not None and in_tokens:
            wh += _tokens_wh(in_tokens, _pick(coefficient.input, pick))
        values.append(round(wh, ENERGY_DECIMALS))
    return Range(*values)


def _pick(value: Range, which: int) -> float:
    return (value.low, value.central, value.high)[which]


def footprint(
    coefficient: Coefficient,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    price_in_per_m: float,
    price_out_per_m: float,
    grid_g_co2e_per_kwh: float,
) -> Footprint:
    energy = energy_wh(coefficient, prompt_tokens, completion_tokens)
    co2e = Range(*(round(wh / 1000 * grid_g_co2e_per_kwh, ENERGY_DECIMALS) for wh in _values(energy)))
    cost = (prompt_tokens * price_in_per_m + completion_tokens * price_out_per_m) / 1_000_000
    return Footprint(round(cost, COST_DECIMALS), energy, co2e, grid_g_co2e_per_kwh)


def _values(value: Range) -> Sequence[float]:
    return (value.low, value.central, value.high)


def facility_scale(scope: str, pue: float) -> float:
    """What a value of this scope is multiplied by to count the whole facility."""
    return 1.0 if scope == "facility" else pue
