"""Reads: the routing configuration as one immutable in-memory snapshot per process.

Providers, models, categories and chains change rarely and are read on every request, so the gateway
reads them from a ``Snapshot`` (reloaded when any process bumps its version) instead of the database.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings

from energy.selectors import ModelRef, energy_profiles
from ledger.coefficients import EnergyProfile
from llm import ProviderConfig
from spignosapi.snapshots import Snapshot

from .models import Category, ChainEntry, CircuitBreaker, LLMModel, ModelAlias, ModelLatency, Provider, Strategy

_WORD = re.compile(r"[a-z0-9_+#]+")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    pk: int
    model_id: str
    provider: str
    name: str
    context_window: int
    price_in_per_m: float
    price_out_per_m: float
    energy_kwh_per_m: float | None
    rpm_budget: int | None
    tpm_budget: int | None
    monitor: bool
    kind: str = "chat"
    supports_tools: bool = False
    supports_structured_output: bool = False
    # Every energy coefficient that may apply, by precedence (energy.selectors.energy_profiles).
    energy: EnergyProfile | None = None
    # Its provider's grid intensity and PUE, the defaults resolved (the carbon strategy reads them).
    grid_gco2e_per_kwh: float = 0.0
    pue: float = 1.0


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    name: str
    description: str
    keywords: tuple[str, ...]
    chain: tuple[str, ...]
    builtin: bool
    examples: tuple[str, ...] = ()
    strategy: str = Strategy.ORDERED


@dataclass(frozen=True, slots=True)
class AliasInfo:
    """A client-facing model name and what it stands for: a category's name or a model id (exactly one)."""

    name: str
    category: str | None
    model: str | None

    @property
    def target(self) -> str:
        return self.category if self.category is not None else str(self.model)

    @property
    def kind(self) -> str:
        return "category" if self.category is not None else "model"


@dataclass(frozen=True)
class RoutingConfig:
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelInfo]
    categories: dict[str, CategoryInfo]
    demo_only: bool
    # keyword -> categories that list it; multi-word keywords are matched as substrings.
    single_words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    phrases: tuple[tuple[str, str], ...] = ()
    # Every alias, by name, including those whose model is disabled (the router says so, rather than 404).
    aliases: dict[str, AliasInfo] = field(default_factory=dict)
    # Provider name → where it runs: (grid gCO2e/kWh, PUE), the defaults resolved (its models carry them too).
    carbon: dict[str, tuple[float, float]] = field(default_factory=dict)

    def words_of(self, text: str) -> set[str]:
        return set(_WORD.findall(text.lower()))


def provider_config(provider: Provider) -> ProviderConfig:
    """The llm-side configuration of a provider; its key is read from the environment variable it names."""
    api_key = os.environ.get(provider.api_key_env) if provider.api_key_env else None
    return ProviderConfig(
        name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url,
        api_key=api_key or None,
        timeout_s=provider.timeout_s,
        connect_timeout_s=provider.connect_timeout_s,
        first_token_timeout_s=provider.first_token_timeout_s,
        api_version=provider.api_version or None,
        drop_params=provider.drop_params,
    )


def load_routing_config() -> RoutingConfig:
    enabled = list(Provider.objects.filter(enabled=True))
    providers = {p.name: provider_config(p) for p in enabled}
    # A provider that does not say where it runs is on the grid the accounting assumes (one setting for both).
    carbon = {
        p.name: (
            settings.ENERGY_GRID_G_CO2E_PER_KWH if p.grid_gco2e_per_kwh is None else p.grid_gco2e_per_kwh,
            1.0 if p.pue is None else p.pue,
        )
        for p in enabled
    }
    models: dict[str, ModelInfo] = {}
    rows = list(LLMModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider"))
    energy = energy_profiles(ModelRef(m.model_id, m.provider.kind, m.name, m.energy_kwh_per_m) for m in rows)
    for m in rows:
        models[m.model_id] = ModelInfo(
            pk=m.pk,
            model_id=m.model_id,
            provider=m.provider.name,
            name=m.name,
            context_window=m.context_window,
            price_in_per_m=float(m.price_in_per_m),
            price_out_per_m=float(m.price_out_per_m),
            energy_kwh_per_m=m.energy_kwh_per_m,
            rpm_budget=m.rpm_budget,
            tpm_budget=m.tpm_budget,
            monitor=m.monitor,
            kind=m.kind,
            supports_tools=m.supports_tools,
            supports_structured_output=m.supports_structured_output,
            energy=energy.get(m.model_id),
            grid_gco2e_per_kwh=carbon[m.provider.name][0],
            pue=carbon[m.provider.name][1],
        )
    chains: dict[int, list[str]] = {}
    for entry in ChainEntry.objects.select_related("model__provider").order_by("position", "id"):
        model_id = entry.model.model_id
        if model_id in models:
            chains.setdefault(entry.category_id, []).append(model_id)
    categories: dict[str, CategoryInfo] = {}
    single: dict[str, list[str]] = {}
    phrases: list[tuple[str, str]] = []
    for c in Category.objects.all():
        keywords = tuple(str(k).lower().strip() for k in c.keywords if str(k).strip())
        examples = tuple(str(e).strip() for e in c.examples if str(e).strip())
        categories[c.name] = CategoryInfo(
            c.name, c.description, keywords, tuple(chains.get(c.pk, [])), c.builtin, examples, c.strategy
        )
        for keyword in keywords:
            if _WORD.fullmatch(keyword):
                single.setdefault(keyword, []).append(c.name)
            else:
                phrases.append((keyword, c.name))
    # Demo mode: every provider that can answer a chat is the demo upstream (local ones only embed).
    chat_providers = Provider.objects.filter(enabled=True).exclude(kind=Provider.Kind.LOCAL).only("is_demo")
    demo_only = bool(providers) and all(p.is_demo for p in chat_providers)
    return RoutingConfig(
        providers=providers,
        models=models,
        categories=categories,
        demo_only=demo_only,
        single_words={k: tuple(v) for k, v in single.items()},
        phrases=tuple(phrases),
        aliases=load_aliases(),
        carbon=carbon,
    )


def alias_info(alias: ModelAlias) -> AliasInfo:
    model = alias.model.model_id if alias.model else None
    return AliasInfo(alias.name, alias.category.name if alias.category else None, model)


def load_aliases() -> dict[str, AliasInfo]:
    rows = ModelAlias.objects.select_related("category", "model__provider").order_by("name")
    return {alias.name: alias_info(alias) for alias in rows}


routing_config: Snapshot[RoutingConfig] = Snapshot("routing", load_routing_config)


@dataclass(frozen=True, slots=True)
class LatencyFigure:
    """A model's recent p50 time to first token: what monitoring publishes and the latency strategy ranks by."""

    p50_ttft_ms: float
    samples: int  # how many measurements the p50 rests on
    measured_at: datetime  # the newest of them (timezone-aware)


def load_latency_figures() -> dict[str, LatencyFigure]:
    rows = ModelLatency.objects.select_related("model__provider")
    return {row.model.model_id: LatencyFigure(row.p50_ttft_ms, row.samples, row.measured_at) for row in rows}


# Apart from the routing snapshot: figures are published every few minutes, and a publication must not make
# every process reload every provider, model and category.
latency_figures: Snapshot[dict[str, LatencyFigure]] = Snapshot("routing-latency", load_latency_figures)


def breaker_rows() -> list[dict[str, Any]]:
    """Every chat model's breaker; a model that never failed has no row yet and is closed."""
    rows = []
    models = LLMModel.objects.filter(kind=LLMModel.Kind.CHAT).select_related("provider", "breaker")
    for model in models.order_by("provider__name", "name"):
        breaker = getattr(model, "breaker", None)
        rows.append(
            {
                "model": model.model_id,
                "state": breaker.state if breaker else CircuitBreaker.State.CLOSED,
                "consecutive_failures": breaker.consecutive_failures if breaker else 0,
                "opened_at": breaker.opened_at if breaker else None,
                "last_error": breaker.last_error if breaker else "",
            }
        )
    return rows
