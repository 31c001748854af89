"""The daily roll-ups of the usage records: by model and provider, and by end user, per UTC day and key.

They are updated right after the records they count are written (``ledger.writer``), so the energy summary
is exact without ever scanning the records of whole days. ``usage_rollups_rebuild`` recomputes them from the
records (after an import, or to repair).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, IntegerField, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from .models import MEASURES, UsageDaily, UsageDailyByUser, UsageRecord

_BY_MODEL = ("day", "api_key_id", "model", "provider")
_BY_USER = ("day", "api_key_id", "user_id")
_UPSERT_CHUNK = 500

logger = logging.getLogger(__name__)


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


def usage_rollups_count(records: Iterable[Any]) -> None:
    """``usage_rollups_add`` for writers that must not fail once their records are written: logs instead."""
    try:
        usage_rollups_add(records)
    except Exception:
        logger.exception("energy roll-ups: update failed, retried with the next usage batch")


@transaction.atomic
def usage_rollups_rebuild() -> tuple[int, int]:
    """Recompute both roll-ups from every usage record; returns their row counts. Run it while nothing writes."""
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
