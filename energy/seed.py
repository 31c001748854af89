"""Default energy coefficients: the demo models, and well-known hosted and open models with their sources.

Idempotent: a coefficient is identified by its model and valid-from, so running this again adds nothing, and
an administrator's own versions (with later valid-from dates) take over from these without touching them.
Most values are EcoLogits estimates from each model's published or estimated parameter count, flagged as
estimated; GPT-4o has published per-query measurements-based figures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from ledger.coefficients import BASIS_OUTPUT, BASIS_TOTAL
from ledger.estimation import ModelSize, estimate_from_size, model_size

from .models import EnergyCoefficient
from .services import energy_changed

# Every seeded version is valid from this date, so it applies to all traffic until a newer version exists.
SEED_VALID_FROM = datetime(2025, 1, 1, tzinfo=UTC)

DEMO = {
    # The demo upstream is a fake: illustrative values, shaped like a small and a mid-size model.
    "demo/demo-fast": (0.03, 0.05, 0.08),
    "demo/demo-smart": (0.18, 0.30, 0.48),
}

PUBLISHED: list[dict[str, Any]] = [
    {
        "model": "gpt-4o",
        "output_kwh_per_m_low": 0.72,
        "output_kwh_per_m": 1.06,
        "output_kwh_per_m_high": 1.40,
        "token_basis": BASIS_OUTPUT,
        "scope": EnergyCoefficient.Scope.FACILITY,
        "pue": 1.2,
        "source": "Low: Epoch AI, 'How much energy does ChatGPT use?' (Feb 2025): ~0.3 Wh per typical GPT-4o query "
        "of ~500 output tokens on H100 servers = 0.6 kWh/M, x PUE 1.2 = 0.72. High: Jegham et al., 'How Hungry is "
        "AI?' (arXiv:2505.09598, 2025): 0.42 Wh per short query (300 output tokens), facility scope = 1.4 kWh/M. "
        "Central: their midpoint.",
        "source_url": "https://epoch.ai/gradient-updates/how-much-energy-does-chatgpt-use",
    },
]

# Bare names (matching that model at any provider) estimated with EcoLogits: hosted models from EcoLogits'
# repository (its parameter estimates and the provider's data-centre PUE), open models from their model cards.
ESTIMATED: list[tuple[str, str, ModelSize | None, str]] = [
    ("gpt-4o-mini", "openai", None, "https://platform.openai.com/docs/models"),
    ("gpt-4.1-mini", "openai", None, "https://platform.openai.com/docs/models"),
    ("gpt-4.1-nano", "openai", None, "https://platform.openai.com/docs/models"),
    ("claude-haiku-4-5", "anthropic", None, "https://docs.anthropic.com/en/docs/about-claude/models"),
    ("claude-sonnet-4-5", "anthropic", None, "https://docs.anthropic.com/en/docs/about-claude/models"),
    ("mistral-small-latest", "mistralai", None, "https://docs.mistral.ai/getting-started/models/"),
    ("mistral-large-latest", "mistralai", None, "https://docs.mistral.ai/getting-started/models/"),
    (
        "llama-3.1-8b-instruct",
        "",
        ModelSize((8.03, 8.03), (8.03, 8.03), "Meta model card: 8.03B"),
        "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct",
    ),
    (
        "llama3.1:8b",
        "",
        ModelSize((8.03, 8.03), (8.03, 8.03), "Meta model card: 8.03B"),
        "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct",
    ),
    (
        "llama-3.1-70b-instruct",
        "",
        ModelSize((70.55, 70.55), (70.55, 70.55), "Meta model card: 70.55B"),
        "https://huggingface.co/meta-llama/Llama-3.1-70B-Instruct",
    ),
    (
        "llama3.2",
        "",
        ModelSize((3.21, 3.21), (3.21, 3.21), "Meta model card: Llama 3.2 3B, 3.21B"),
        "https://huggingface.co/meta-llama/Llama-3.2-3B-Instruct",
    ),
    (
        "mistral-7b-instruct",
        "",
        ModelSize((7.25, 7.25), (7.25, 7.25), "Mistral model card: 7.25B"),
        "https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.3",
    ),
    (
        "mixtral-8x7b-instruct",
        "",
        ModelSize((12.9, 12.9), (46.7, 46.7), "Mistral model card: 46.7B total, 12.9B active"),
        "https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1",
    ),
    (
        "gemma-2-9b-it",
        "",
        ModelSize((9.24, 9.24), (9.24, 9.24), "Google model card: 9.24B"),
        "https://huggingface.co/google/gemma-2-9b-it",
    ),
]


def _create(model: str, values: dict[str, Any]) -> bool:
    _, created = EnergyCoefficient.objects.get_or_create(model=model, valid_from=SEED_VALID_FROM, defaults=values)
    return created


def _estimated_values(kind: str, name: str, size: ModelSize | None, url: str) -> dict[str, Any] | None:
    try:
        found = size or model_size(kind, name)
        if found is None:
            return None
        coefficient = estimate_from_size(found)  # open models: host unknown, so the settings' PUE range
        pue_low, pue_high = found.pue or (settings.ENERGY_ESTIMATE_PUE_LOW, settings.ENERGY_ESTIMATE_PUE_HIGH)
    except ImportError:  # EcoLogits not installed: these defaults are skipped, models are estimated on the fly
        return None
    return {
        "output_kwh_per_m_low": coefficient.output.low,
        "output_kwh_per_m": coefficient.output.central,
        "output_kwh_per_m_high": coefficient.output.high,
        "token_basis": coefficient.token_basis,
        "scope": EnergyCoefficient.Scope.FACILITY,
        "pue": round((pue_low + pue_high) / 2, 3),  # included (facility scope); the range is in the source
        "estimated": True,
        "source": coefficient.source,
        "source_url": url,
    }


def seed_defaults() -> str:
    created = 0
    for model, (low, central, high) in DEMO.items():
        created += _create(
            model,
            {
                "output_kwh_per_m_low": low,
                "output_kwh_per_m": central,
                "output_kwh_per_m_high": high,
                "token_basis": BASIS_TOTAL,
                "scope": EnergyCoefficient.Scope.FACILITY,
                "source": "Demo upstream: illustrative values, not a measurement.",
            },
        )
    for values in PUBLISHED:
        created += _create(values["model"], {k: v for k, v in values.items() if k != "model"})
    for name, kind, size, url in ESTIMATED:
        estimated = _estimated_values(kind, name, size, url)
        if estimated is not None:
            created += _create(name, estimated)
    if created:
        energy_changed()
    return f"{created} coefficients created" if created else "already seeded"
