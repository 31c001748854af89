"""Energy and carbon accounting: grid carbon intensity, and the fallbacks used when a model's energy is unknown."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .env import env_float, env_str

# Life-cycle carbon intensity of electricity in gCO2e/kWh per zone (ISO 3166-1 alpha-3), from the electricity mix
# table EcoLogits 0.11.3 ships (ecologits/data/electricity_mixes.json). "WOR" keeps the world average this
# project has used from the start (IEA, ~475 g/kWh); set ENERGY_GRID_ZONE to your deployment's zone.
GRID_ZONES_G_CO2E_PER_KWH: dict[str, float] = {
    "WOR": 475.0,
    "AUS": 525.18,
    "BEL": 149.82,
    "BRA": 109.95,
    "CAN": 190.72,
    "CHE": 39.22,
    "CHN": 525.34,
    "DEU": 329.65,
    "ESP": 153.6,
    "FIN": 57.47,
    "FRA": 41.44,
    "GBR": 217.41,
    "IND": 670.13,
    "IRL": 256.54,
    "ITA": 284.78,
    "JPN": 477.26,
    "NLD": 253.56,
    "NOR": 28.11,
    "POL": 588.6,
    "SWE": 35.26,
    "USA": 384.4,
}

ENERGY_GRID_ZONE = env_str("ENERGY_GRID_ZONE", "WOR").strip().upper()
if ENERGY_GRID_ZONE not in GRID_ZONES_G_CO2E_PER_KWH:
    raise ImproperlyConfigured(
        f"ENERGY_GRID_ZONE must be one of {', '.join(sorted(GRID_ZONES_G_CO2E_PER_KWH))}, got {ENERGY_GRID_ZONE!r} "
        "(or set ENERGY_GRID_G_CO2E_PER_KWH to your grid's intensity)"
    )
# An explicit intensity wins over the zone's (e.g. a supplier's contract or an hourly average you trust more).
ENERGY_GRID_G_CO2E_PER_KWH = env_float(
    "ENERGY_GRID_G_CO2E_PER_KWH", GRID_ZONES_G_CO2E_PER_KWH[ENERGY_GRID_ZONE], minimum=0.0
)

# A model with no coefficient and no known parameter count uses this (kWh per million tokens), flagged estimated.
ENERGY_DEFAULT_KWH_PER_M = env_float("ENERGY_DEFAULT_KWH_PER_M", 1.0, minimum=0.0)
# Data-centre PUE range assumed when a model's size is known but its host is not: 1.09 (hyperscalers, as in
# EcoLogits) to 1.56 (Uptime Institute Global Data Center Survey 2024, industry average).
ENERGY_ESTIMATE_PUE_LOW = env_float("ENERGY_ESTIMATE_PUE_LOW", 1.09, minimum=1.0)
ENERGY_ESTIMATE_PUE_HIGH = env_float("ENERGY_ESTIMATE_PUE_HIGH", 1.56, minimum=1.0)
if ENERGY_ESTIMATE_PUE_HIGH < ENERGY_ESTIMATE_PUE_LOW:
    raise ImproperlyConfigured("ENERGY_ESTIMATE_PUE_HIGH must be >= ENERGY_ESTIMATE_PUE_LOW")
