"""Writes usage records, then counts them into the daily roll-ups (``ledger.rollups``).

``usage_rows_write`` is the usage buffer's writer; ``usage_records_create`` writes model instances (an
import, a test's fixtures). A failure to update the roll-ups is logged and retried with the next batch; the
records stay written.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from django.db import connection

from .models import UsageRecord
from .rollups import usage_rollups_count
from .rows import UsageRow


def usage_records_create(records: Sequence[UsageRecord], *, batch_size: int = 500) -> list[UsageRecord]:
    """Write ``UsageRecord`` objects, then count them into the roll-ups."""
    created = UsageRecord.objects.bulk_create(records, batch_size=batch_size)
    usage_rollups_count(created)
    return created


@functools.cache
def _columns() -> tuple[tuple[str, str], ...]:
    """(attribute name, column) of every ``UsageRecord`` column but the id, in table order."""
    return tuple(
        (field.attname, str(field.column)) for field in UsageRecord._meta.concrete_fields if not field.primary_key
    )


def usage_record_of(row: UsageRow) -> UsageRecord:
    return UsageRecord(**{name: getattr(row, name) for name, _ in _columns()})


def usage_rows_write(rows: Sequence[UsageRow], *, copy: bool | None = None) -> None:
    """Write usage rows, then count them into the roll-ups.

    On PostgreSQL (``copy`` None or True) one ``COPY``: no model instances and psycopg's C adapters, a
    fraction of ``bulk_create``'s CPU (which runs in the web processes, beside the requests); elsewhere
    (SQLite, ``make run``'s default) ``bulk_create``. One bad row fails the batch.
    """
    if copy is None:
        copy = connection.vendor == "postgresql"
    if not copy:
        usage_records_create([usage_record_of(row) for row in rows])
        return
    _copy_rows(rows)
    usage_rollups_count(rows)


def _copy_rows(rows: Sequence[UsageRow]) -> None:
    quote = connection.ops.quote_name
    columns = _columns()
    table = quote(UsageRecord._meta.db_table)
    statement = f"COPY {table} ({', '.join(quote(column) for _, column in columns)}) FROM STDIN"
    attempts = next(i for i, (name, _) in enumerate(columns) if name == "attempts")
    # psycopg's copy() is reached past Django's cursor wrapper: its errors are turned into Django's here.
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(statement) as writer:
        for row in rows:
            values = [getattr(row, name) for name, _ in columns]
            values[attempts] = json.dumps(values[attempts])
            writer.write_row(values)
