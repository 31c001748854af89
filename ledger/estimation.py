"""Energy per million output tokens estimated from a model's parameter count, with EcoLogits.

EcoLogits (GenAI Impact, https://ecologits.ai, MPL-2.0) models a request's energy from the number of active
parameters: GPU energy per output token from a regression on the ML.ENERGY leaderboard measurements, plus
the server's share over the generation time, times the data centre's PUE ("LLM inference" methodology,
https://ecologits.ai/latest/methodology/llm_inference/). Its cost is linear in output tokens (when the
time to first token is left out), so one evaluation for a million tokens gives a kWh/M coefficient with
the output token basis. The parameter count comes from EcoLogits' own model repository (published or
estimated sizes, with sources), else from the model's name ("llama3.1:8b", "qwen2.5-7b-instruct").

Every value made here is flagged ``estimated``. The package is only imported when an estimate is needed.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .coefficients import BASIS_OUTPUT, Coefficient, Range

_DENSE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b(?![a-z0-9])")
_MOE = re.compile(r"(?<![a-z0-9.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z0-9])")
# Which EcoLogits provider's models (and data-centre PUE) a platform provider kind is looked up in first.
_ECOLOGITS_PROVIDER = {"openai": "openai", "azure": "openai", "anthropic": "anthropic", "mistralai": "mistralai"}


@dataclass(frozen=True, slots=True)
class ModelSize:
    """Billions of parameters, as (low, high) ranges; ``how`` says where they were found."""

    active: tuple[float, float]
    total: tuple[float, float]
    how: str
    tps: float | None = None
    pue: tuple[float, float] | None = None


def ecologits_version() -> str:
    try:
        import ecologits
    except ImportError:
        return ""
    return str(ecologits.__version__)


def _bounds(value: Any) -> tuple[float, float]:
    if hasattr(value, "min"):
        return float(value.min), float(value.max)
    return float(value), float(value)


@functools.cache
def _repository_index() -> dict[str, list[Any]]:
    """EcoLogits' models by lower-cased name and by the last part of a ``vendor/name`` name."""
    from ecologits.model_repository import models

    index: dict[str, list[Any]] = {}
    for model in models.list_models():
        name = model.name.lower()
        for key in {name, name.rsplit("/", 1)[-1]}:
            index.setdefault(key, []).append(model)
    return index


def _from_repository(kind: str, name: str) -> ModelSize | None:
    try:
        from ecologits.model_repository import ParametersMoE
        from ecologits.tracers.utils import PROVIDER_CONFIG_MAP
    except ImportError:
        return None
    lowered = name.lower().removesuffix(":latest")
    candidates = _repository_index().get(lowered) or _repository_index().get(lowered.rsplit("/", 1)[-1]) or []
    if not candidates:
        return None
    preferred = _ECOLOGITS_PROVIDER.get(kind)
    candidates = sorted(candidates, key=lambda m: (m.provider.value != preferred, m.provider.value, m.name))
    model = candidates[0]
    parameters = model.architecture.parameters
    if isinstance(parameters, ParametersMoE):
        active, total = _bounds(parameters.active), _bounds(parameters.total)
    else:
        active = total = _bounds(parameters)
    config = PROVIDER_CONFIG_MAP.get(model.provider.value)
    pue = _bounds(config.datacenter_pue) if config is not None and model.provider.value == preferred else None
    tps = model.deployment.tps if model.deployment else None
    return ModelSize(active, total, f"EcoLogits model repository: {model.provider.value}/{model.name}", tps, pue)


def _from_name(name: str) -> ModelSize | None:
    lowered = name.lower()
    moe = _MOE.search(lowered)
    if moe:
        experts, size = int(moe.group(1)), float(moe.group(2))
        # Mixture of experts: the low end assumes top-2 routing, the high end every expert.
        return ModelSize((2 * size, experts * size), (experts * size, experts * size), f"name: {moe.group(0)} (MoE)")
    dense = _DENSE.search(lowered)
    if dense:
        size = float(dense.group(1))
        return ModelSize((size, size), (size, size), f"name: {dense.group(0)}")
    return None


def model_size(kind: str, name: str) -> ModelSize | None:
    """The parameter count of a model, from EcoLogits' repository, else from its name; None if unknown."""
    return _from_repository(kind, name) or _from_name(name)


def ecologits_kwh_per_m(
    active_b: float, total_b: float, pue: float, tps: float | None = None, tokens: int = 1_000_000
) -> float:
    """kWh for ``tokens`` output tokens, facility scope (PUE included), per EcoLogits' LLM inference model."""
    from ecologits.impacts.llm import compute_llm_impacts
    from ecologits.utils.range_value import RangeValue

    impacts = compute_llm_impacts(
        model_active_parameter_count=active_b,
        model_total_parameter_count=total_b,
        output_token_count=tokens,
        request_latency=math.inf,
        if_electricity_mix_adpe=0.0,
        if_electricity_mix_pe=0.0,
        if_electricity_mix_gwp=0.0,
        if_electricity_mix_wue=0.0,
        datacenter_pue=pue,
        datacenter_wue=0.0,
        tps=tps,
    )
    kwh = impacts.energy.value
    assert not isinstance(kwh, RangeValue)  # a range comes only from a range of parameter counts, never given here
    return float(kwh) * 1_000_000 / tokens


def estimate_from_size(size: ModelSize) -> Coefficient:
    """Low / central / high kWh per million output tokens for a model of this size."""
    pue_low, pue_high = size.pue or (settings.ENERGY_ESTIMATE_PUE_LOW, settings.ENERGY_ESTIMATE_PUE_HIGH)
    low = ecologits_kwh_per_m(size.active[0], size.total[0], pue_low, size.tps)
    high = ecologits_kwh_per_m(size.active[1], size.total[1], pue_high, size.tps)
    central = ecologits_kwh_per_m(sum(size.active) / 2, sum(size.total) / 2, (pue_low + pue_high) / 2, size.tps)
    source = (
        f"Estimated with EcoLogits {ecologits_version()} from {_span(size.active)}B active parameters "
        f"({size.how}), PUE {_span((pue_low, pue_high))}"
    )
    return Coefficient(output=Range(low, central, high), token_basis=BASIS_OUTPUT, estimated=True, source=source)


def _span(values: tuple[float, float]) -> str:
    return f"{values[0]:g}" if values[0] == values[1] else f"{values[0]:g}-{values[1]:g}"


@functools.lru_cache(maxsize=1024)
def estimate(kind: str, name: str) -> Coefficient:
    """The estimate for a model with no coefficient of its own, always flagged ``estimated``.

    Without a known size (or without EcoLogits installed) it is ``ENERGY_DEFAULT_KWH_PER_M`` for every token.
    """
    try:
        size = model_size(kind, name)
        if size is not None:
            return estimate_from_size(size)
    except ImportError:
        pass
    default = settings.ENERGY_DEFAULT_KWH_PER_M
    return Coefficient(
        output=Range.single(default),
        estimated=True,
        source=f"Default for a model of unknown size (ENERGY_DEFAULT_KWH_PER_M = {default:g} kWh/M, all tokens)",
    )
