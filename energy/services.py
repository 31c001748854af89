"""Writes: energy coefficients (each change reloads the routing snapshot that carries them) and the roll-ups.

The daily roll-ups are updated right after the usage records they count are written
(``usage_records_create``), so the summary is exact without ever scanning the records of whole days.
``usage_rollups_rebuild`` recomputes them from the records (after an import, or to repair).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, IntegerField, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from .models import MEASURES, EnergyCoefficient, UsageDaily, UsageDailyByUser

_BY_MODEL = ("day", "api_key_id", "model", "provider")
_BY_USER = ("day", "api_key_id", "user_id")
_UPSERT_CHUNK = 500

logger = logging.getLogger(__name__)


def energy_changed() -> None:
    """Coefficients travel in the routing snapshot: every process reloads it once the change is committed."""
    from routing.services import routing_changed

    routing_changed()


# --- roll-ups ------------------------------------------------------------------------------------------------


def _day(value: datetime) -> date:
    return value.astimezone(UTC).date()


def _measures(record: Any) -> tuple[Any, ...]:
    return (
        1,
        record.prompt_tokens,
        record.completion_tokens,
        record.energy_wh,
        record.energy_wh_low,
        record.energy_wh_high,
        record.co2e_g,
        record.co2e_g_low,
        record.co2e_g_high,
        _decimal(record.cost_usd),
        1 if record.energy_estimated else 0,
    )


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _accumulate(into: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], values: tuple[Any, ...]) -> None:
    current = into.get(key)
    if current is None:
        into[key] = list(values)
    else:
        for i, value in enumerate(values):
            current[i] += value


def _upsert(table: str, key_columns: Sequence[str], rows: dict[tuple[Any, ...], list[Any]]) -> None:
    if not rows:
        return
    quote = connection.ops.quote_name
    columns = [*key_columns, *MEASURES]
    updates = ", ".join(f"{quote(c)} = {quote(table)}.{quote(c)} + EXCLUDED.{quote(c)}" for c in MEASURES)
    head = f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) VALUES "
    tail = f" ON CONFLICT ({', '.join(quote(c) for c in key_columns)}) DO UPDATE SET {updates}"
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    # Always in key order: two processes flushing overlapping batches then lock rows in the same order and
    # never deadlock.
    items = sorted(rows.items())
    with connection.cursor() as cursor:
        for start in range(0, len(items), _UPSERT_CHUNK):
            chunk = items[start : start + _UPSERT_CHUNK]
            params = [value for key, values in chunk for value in (*key, *values)]
            cursor.execute(head + ", ".join([placeholder] * len(chunk)) + tail, params)


class _Pending:
    """Roll-up additions that failed (database hiccup) and are retried with the next batch, in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_model: dict[tuple[Any, ...], list[Any]] = {}
        self.by_user: dict[tuple[Any, ...], list[Any]] = {}

    def take(self) -> tuple[dict[tuple[Any, ...], list[Any]], dict[tuple[Any, ...], list[Any]]]:
        with self.lock:
            taken = self.by_model, self.by_user
            self.by_model, self.by_user = {}, {}
            return taken

    def give_back(self, by_model: dict[tuple[Any, ...], list[Any]], by_user: dict[tuple[Any, ...], list[Any]]) -> None:
        with self.lock:
            for key, values in by_model.items():
                _accumulate(self.by_model, key, tuple(values))
            for key, values in by_user.items():
                _accumulate(self.by_user, key, tuple(values))


_pending = _Pending()


def usage_rollups_add(records: Iterable[Any]) -> None:
    """Count usage records (already written) into the daily roll-ups.

    Each roll-up table is updated by its own statement, outside the records' transaction: a transaction
    that held locks on two tables could deadlock with a multi-table TRUNCATE or with another writer taking
    them in the other order. If an update fails, it is kept and retried with the next call (see
    ``usage_rollups_rebuild`` to recount after a crash in between).
    """
    by_model, by_user = _pending.take()
    for record in records:
        day, key = _day(record.created_at), record.api_key_id or 0
        values = _measures(record)
        _accumulate(by_model, (day, key, record.model, record.provider), values)
        _accumulate(by_user, (day, key, record.user_id), values)
    try:
        _upsert(UsageDaily._meta.db_table, _BY_MODEL, by_model)
        by_model = {}
        _upsert(UsageDailyByUser._meta.db_table, _BY_USER, by_user)
    except Exception:
        _pending.give_back(by_model, by_user)
        raise


def usage_records_create(records: Sequence[Any], *, batch_size: int = 500) -> list[Any]:
    """Write ``UsageRecord`` objects, then count them into the roll-ups.

    A failure to update the roll-ups is logged and retried with the next batch; the records stay written.
    """
    from routing.models import UsageRecord

    created = UsageRecord.objects.bulk_create(records, batch_size=batch_size)
    usage_rollups_count(created)
    return created


@functools.cache
def _usage_fields() -> tuple[tuple[str, str, Any], ...]:
    """(attribute name, column, default) of every ``UsageRecord`` column but the id, in table order."""
    from routing.models import UsageRecord

    return tuple(
        (field.attname, str(field.column), field.get_default())
        for field in UsageRecord._meta.concrete_fields
        if not field.primary_key
    )


def usage_rows_write(rows: Sequence[Mapping[str, Any]], *, copy: bool | None = None) -> list[Any]:
    """Write usage rows (attribute name → value, as ``UsageRecord(**row)`` takes them), then count them into
    the roll-ups; returns them as records (attributes; model instances from ``usage_records_create``).

    The usage buffer's writer. On PostgreSQL (``copy`` None or True) one ``COPY``: no model instances and
    psycopg's C adapters, a fraction of ``bulk_create``'s CPU (which runs in the web processes, beside the
    requests); elsewhere (SQLite, ``make run``'s default) ``bulk_create``. One bad row fails the batch.
    """
    from routing.models import UsageRecord

    fields = _usage_fields()
    known = {name for name, _, _ in fields}
    records = []
    for row in rows:
        unknown = row.keys() - known
        if unknown:
            raise TypeError(f"usage row with unknown fields: {sorted(unknown)}")
        records.append(SimpleNamespace(**{name: row.get(name, default) for name, _, default in fields}))
    if copy is None:
        copy = connection.vendor == "postgresql"
    if not copy:
        return usage_records_create([UsageRecord(**vars(record)) for record in records])
    _copy_rows(UsageRecord._meta.db_table, fields, records)
    usage_rollups_count(records)
    return records


def _copy_rows(table: str, fields: tuple[tuple[str, str, Any], ...], records: list[SimpleNamespace]) -> None:
    quote = connection.ops.quote_name
    statement = f"COPY {quote(table)} ({', '.join(quote(column) for _, column, _ in fields)}) FROM STDIN"
    attempts = next(i for i, (name, _, _) in enumerate(fields) if name == "attempts")
    # psycopg's copy() is reached past Django's cursor wrapper: its errors are turned into Django's here.
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(statement) as writer:
        for record in records:
            values = [getattr(record, name) for name, _, _ in fields]
            values[attempts] = json.dumps(values[attempts])
            writer.write_row(values)


def usage_rollups_count(records: Iterable[Any]) -> None:
    """``usage_rollups_add`` for writers that must not fail once their records are written: logs instead."""
    try:
        usage_rollups_add(records)
    except Exception:
        logger.exception("energy roll-ups: update failed, retried with the next usage batch")


@transaction.atomic
def usage_rollups_rebuild() -> tuple[int, int]:
    """Recompute both roll-ups from every usage record; returns their row counts. Run it while nothing writes."""
    from routing.models import UsageRecord

    UsageDaily.objects.all().delete()
    UsageDailyByUser.objects.all().delete()
    sums: dict[str, Any] = {name: Sum(name) for name in MEASURES if name not in ("requests", "estimated_requests")}
    sums["requests"] = Count("id")
    sums["estimated_requests"] = Count("id", filter=Q(energy_estimated=True))
    records = UsageRecord.objects.order_by().annotate(
        day=TruncDate("created_at", tzinfo=UTC), key=Coalesce("api_key_id", Value(0), output_field=IntegerField())
    )
    counts = []
    for table, columns in ((UsageDaily, ("model", "provider")), (UsageDailyByUser, ("user_id",))):
        batch: list[Any] = []
        total = 0
        for row in records.values("day", "key", *columns).annotate(**sums).iterator(chunk_size=5000):
            row["api_key_id"] = row.pop("key")
            batch.append(table(**row))
            if len(batch) >= 5000:
                table.objects.bulk_create(batch)
                total += len(batch)
                batch = []
        table.objects.bulk_create(batch)
        counts.append(total + len(batch))
    return counts[0], counts[1]


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
    central = model.get("energy_kwh_per_m")
    if not _number(central):
        errors.append(f"{where}: needs energy_kwh_per_m (the central value) on the model")
    for key in ("low", "high", "input_kwh_per_m", "input_low", "input_high"):
        if key in spec and spec[key] is not None and (not _number(spec[key]) or spec[key] < 0):
            errors.append(f"{where}.{key}: expected a number >= 0, got {spec[key]!r}")
    if "pue" in spec and (not _number(spec["pue"]) or spec["pue"] < 1):
        errors.append(f"{where}.pue: expected a number >= 1, got {spec['pue']!r}")
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
    if not errors:
        central = float(model["energy_kwh_per_m"])
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
