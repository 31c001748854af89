"""Ordering a category's chain for one request by what the platform knows: the category's strategy.

- ``ordered``: the chain as written (no reasons are recorded: the attempts stay as they always were).
- ``latency``: ascending recent p50 time to first token, as monitoring last published it
  (``routing.services.publish_latency_figures``). A figure is used only when it was measured at most
  ``ROUTING_LATENCY_MAX_AGE_S`` ago and rests on at least ``ROUTING_LATENCY_MIN_SAMPLES`` samples.
- ``cost``: ascending expected price of this request: prompt tokens × input price + the most tokens it may
  generate (``max_tokens`` × ``n``) × output price. Prices default to 0, so cost data is never missing.
- ``carbon``: ascending gCO2e per token: the model's energy coefficient (kWh per million tokens, the one the
  accounting books with, as it stands at the request's time; an estimate when nothing better is known) × its
  provider's ``grid_gco2e_per_kwh`` × ``pue`` (the defaults resolved by the routing snapshot).

The models with a figure come first, best first; equal figures keep their chain order (a stable sort). A model
without a usable figure (only the latency strategy can lack one: none published, too old, too few samples)
is not ranked: such models follow every ranked one, in their chain order. A category with no usable figure at
all therefore walks its chain exactly as ``ordered`` would.

This only orders: the gateway then walks the result, and breakers, outbound budgets, limits and allow-lists
apply to each model as it comes, so an open breaker on the best model sends the request to the next best.
Pure and in memory (the snapshots hold everything): no I/O on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ledger.accounting import coefficient_for

from .models import Strategy
from .selectors import LatencyFigure, ModelInfo

# The reason of an unranked model names why its figure was not used, then this.
CHAIN_ORDER = "chain order"


@dataclass(frozen=True, slots=True)
class Freshness:
    """When a latency figure is recent and broad enough to route by (the settings, handed in)."""

    max_age_s: float
    min_samples: int


@dataclass(frozen=True, slots=True)
class Ranking:
    chain: tuple[str, ...]  # the order to walk
    reasons: Mapping[str, str]  # model id → why it stands where it does (empty for ``ordered``)


# A model's figure (lower is better) and the words that explain it; no figure: why not.
_Scored = tuple[float | None, str]


def rank(
    strategy: str,
    chain: Sequence[str],
    models: Mapping[str, ModelInfo],
    *,
    prompt_tokens: int,
    completion_tokens: int,
    now: datetime,
    latency: Mapping[str, LatencyFigure] | None = None,
    freshness: Freshness | None = None,
) -> Ranking:
    """The chain in the order ``strategy`` prefers for a request of this size at ``now`` (see the module)."""
    if strategy == Strategy.ORDERED or len(chain) == 0:
        return Ranking(tuple(chain), {})
    ranked: list[tuple[float, int, str]] = []
    unranked: list[str] = []
    reasons: dict[str, str] = {}
    for position, model_id in enumerate(chain):
        info = models.get(model_id)
        if info is None:
            figure, reason = None, "unknown model"
        elif strategy == Strategy.LATENCY:
            figure, reason = _latency(model_id, latency or {}, freshness, now)
        elif strategy == Strategy.COST:
            figure, reason = _cost(info, prompt_tokens, completion_tokens)
        elif strategy == Strategy.CARBON:
            figure, reason = _carbon(info, now)
        else:
            raise ValueError(f"unknown routing strategy {strategy!r}")
        if figure is None:
            unranked.append(model_id)
            reasons[model_id] = f"{reason}: {CHAIN_ORDER}"
        else:
            ranked.append((figure, position, model_id))
            reasons[model_id] = reason
    ranked.sort()
    return Ranking(tuple(model_id for _, _, model_id in ranked) + tuple(unranked), reasons)


def _latency(
    model_id: str, figures: Mapping[str, LatencyFigure], freshness: Freshness | None, now: datetime
) -> _Scored:
    figure = figures.get(model_id)
    if figure is None:
        return None, "no latency figures"
    if freshness is not None:
        age_s = (now - figure.measured_at).total_seconds()
        if age_s > freshness.max_age_s:
            return None, f"stale latency figures ({age_s:.0f} s old)"
        if figure.samples < freshness.min_samples:
            return None, f"too few latency samples ({figure.samples} < {freshness.min_samples})"
    return figure.p50_ttft_ms, f"latency p50 {figure.p50_ttft_ms:.0f} ms ({figure.samples} samples)"


def _cost(info: ModelInfo, prompt_tokens: int, completion_tokens: int) -> _Scored:
    usd = (prompt_tokens * info.price_in_per_m + completion_tokens * info.price_out_per_m) / 1_000_000
    return usd, (
        f"expected cost ${usd:.6f} ({prompt_tokens} prompt tokens × ${info.price_in_per_m:g}/M"
        f" + {completion_tokens} max tokens × ${info.price_out_per_m:g}/M)"
    )


def _carbon(info: ModelInfo, now: datetime) -> _Scored:
    coefficient = coefficient_for(info, now)
    kwh_per_m = coefficient.output.central
    # kWh per million tokens × g per kWh = g per million tokens; shown per thousand, a readable size.
    g_per_m = kwh_per_m * info.grid_gco2e_per_kwh * info.pue
    estimated = ", estimated" if coefficient.estimated else ""
    return g_per_m, (
        f"carbon {g_per_m / 1000:.4g} gCO2e per 1k tokens ({kwh_per_m:g} kWh/M × "
        f"{info.grid_gco2e_per_kwh:g} g/kWh × PUE {info.pue:g}{estimated})"
    )
