"""Writes: energy coefficients (each change reloads the routing snapshot that carries them).

The usage records and their daily roll-ups are the ledger's (``ledger.writer``, ``ledger.rollups``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from spignosapi.snapshots import snapshot_changed

from .models import EnergyCoefficient


def energy_changed() -> None:
    """Coefficients travel in the routing snapshot (``routing.selectors``): this process reloads it now, every
    other one once the change is committed. Named, not imported: routing reads energy, not the other way."""
    snapshot_changed("routing")


# --- coefficients --------------------------------------------------------------------------------------------

# The optional ``energy:`` mapping of a model in sync_providers YAML; ``energy_kwh_per_m`` stays the central value.
ENERGY_KEYS = {
    "low",
    "high",
    "input_kwh_per_m",
    "input_low",
    "input_high",
    "token_basis",
    "scope",
    "pue",
    "source",
    "source_url",
    "valid_from",
    "estimated",
}
_COMPARED = (
    "output_kwh_per_m_low",
    "output_kwh_per_m",
    "output_kwh_per_m_high",
    "input_kwh_per_m_low",
    "input_kwh_per_m",
    "input_kwh_per_m_high",
    "token_basis",
    "scope",
    "pue",
    "estimated",
    "source",
    "source_url",
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _when(value: Any) -> datetime | None:
    """A YAML date or datetime (or ISO string) as an aware datetime; None if it is not one."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _when(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def energy_spec_errors(model: dict[str, Any], where: str) -> list[str]:
    """Problems with a YAML model's ``energy:`` mapping, each named by its place in the file."""
    spec = model.get("energy")
    if spec is None:
        return []
    where = f"{where}.energy"
    if not isinstance(spec, dict):
        return [f"{where}: expected a mapping"]
    errors = [f"{where}: unknown key {key!r}" for key in sorted(set(spec) - ENERGY_KEYS, key=str)]
    if not _number(model.get("energy_kwh_per_m")):
        errors.append(f"{where}: needs energy_kwh_per_m (the central value) on the model")
    errors += _spec_number_errors(spec, where) + _spec_choice_errors(spec, where)
    if not errors:  # every value has its type: the ranges they make can be compared
        errors = _spec_range_errors(float(model["energy_kwh_per_m"]), spec, where)
    return errors


def _spec_number_errors(spec: dict[str, Any], where: str) -> list[str]:
    errors = []
    for key in ("low", "high", "input_kwh_per_m", "input_low", "input_high"):
        if key in spec and spec[key] is not None and (not _number(spec[key]) or spec[key] < 0):
            errors.append(f"{where}.{key}: expected a number >= 0, got {spec[key]!r}")
    if "pue" in spec and (not _number(spec["pue"]) or spec["pue"] < 1):
        errors.append(f"{where}.pue: expected a number >= 1, got {spec['pue']!r}")
    return errors


def _spec_choice_errors(spec: dict[str, Any], where: str) -> list[str]:
    errors = []
    if "token_basis" in spec and spec["token_basis"] not in EnergyCoefficient.Basis.values:
        errors.append(f"{where}.token_basis: one of {', '.join(EnergyCoefficient.Basis.values)}")
    if "scope" in spec and spec["scope"] not in EnergyCoefficient.Scope.values:
        errors.append(f"{where}.scope: one of {', '.join(EnergyCoefficient.Scope.values)}")
    for key in ("source", "source_url"):
        if key in spec and not isinstance(spec[key], str):
            errors.append(f"{where}.{key}: expected a string")
    if "estimated" in spec and not isinstance(spec["estimated"], bool):
        errors.append(f"{where}.estimated: expected true or false")
    if "valid_from" in spec and _when(spec["valid_from"]) is None:
        errors.append(f"{where}.valid_from: expected a date or an ISO 8601 date-time, got {spec['valid_from']!r}")
    return errors


def _spec_range_errors(central: float, spec: dict[str, Any], where: str) -> list[str]:
    errors = []
    low, high = float(spec.get("low", central)), float(spec.get("high", central))
    if not low <= central <= high:
        errors.append(f"{where}: expected low <= energy_kwh_per_m <= high, got {low:g}, {central:g}, {high:g}")
    if spec.get("input_kwh_per_m") is not None:
        inp = float(spec["input_kwh_per_m"])
        if not float(spec.get("input_low", inp)) <= inp <= float(spec.get("input_high", inp)):
            errors.append(f"{where}: expected input_low <= input_kwh_per_m <= input_high")
        if spec.get("token_basis", EnergyCoefficient.Basis.OUTPUT) != EnergyCoefficient.Basis.OUTPUT:
            errors.append(f"{where}: an input coefficient needs token_basis: output")
    return errors


def _values_from_spec(central: float, spec: dict[str, Any] | None) -> dict[str, Any]:
    if spec is None:
        # A bare energy_kwh_per_m: one value for every token, as the contract describes it.
        return {
            "output_kwh_per_m_low": central,
            "output_kwh_per_m": central,
            "output_kwh_per_m_high": central,
            "input_kwh_per_m_low": None,
            "input_kwh_per_m": None,
            "input_kwh_per_m_high": None,
            "token_basis": EnergyCoefficient.Basis.TOTAL,
            "scope": EnergyCoefficient.Scope.FACILITY,
            "pue": 1.0,
            "estimated": False,
            "source": "sync_providers: energy_kwh_per_m",
            "source_url": "",
        }
    inp = spec.get("input_kwh_per_m")
    return {
        "output_kwh_per_m_low": float(spec.get("low", central)),
        "output_kwh_per_m": float(central),
        "output_kwh_per_m_high": float(spec.get("high", central)),
        "input_kwh_per_m_low": None if inp is None else float(spec.get("input_low", inp)),
        "input_kwh_per_m": None if inp is None else float(inp),
        "input_kwh_per_m_high": None if inp is None else float(spec.get("input_high", inp)),
        "token_basis": spec.get("token_basis", EnergyCoefficient.Basis.OUTPUT),
        "scope": spec.get("scope", EnergyCoefficient.Scope.FACILITY),
        "pue": float(spec.get("pue", 1.0)),
        "estimated": bool(spec.get("estimated", False)),
        "source": spec.get("source") or "sync_providers",
        "source_url": spec.get("source_url") or "",
    }


class CoefficientConflict(Exception):
    pass


def coefficient_sync(
    *, model_id: str, central: float | None, spec: dict[str, Any] | None, now: datetime | None = None
) -> bool:
    """Record a new coefficient version for ``model_id`` if the YAML's differs from its current one.

    With an ``energy:`` mapping, the first sync records a version; a bare ``energy_kwh_per_m`` only does when
    the model already has coefficients of its own (else its own setting is what applies, see the selectors).
    Returns whether a version was recorded. Never edits an existing version (``CoefficientConflict`` if the
    YAML names an existing valid_from with other values).
    """
    if central is None:
        return False
    versions = EnergyCoefficient.objects.filter(model=model_id)
    latest = versions.order_by("-valid_from").first()
    if latest is None and spec is None:
        return False
    values = _values_from_spec(central, spec)
    valid_from = _when((spec or {}).get("valid_from")) or now or datetime.now(UTC)
    same_time = versions.filter(valid_from=valid_from).first()
    if same_time is not None:
        if all(getattr(same_time, name) == values[name] for name in _COMPARED):
            return False
        raise CoefficientConflict(
            f"a coefficient for {model_id} valid from {valid_from.isoformat()} already exists with other values: "
            "give the new one a later valid_from"
        )
    unchanged = latest is not None and all(getattr(latest, name) == values[name] for name in _COMPARED)
    if unchanged and "valid_from" not in (spec or {}):
        return False
    EnergyCoefficient.objects.create(model=model_id, valid_from=valid_from, **values)
    energy_changed()
    return True
