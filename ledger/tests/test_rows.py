"""``UsageRow`` and ``UsageRecord`` describe the same row: the writer copies one into the other column by column."""

from __future__ import annotations

import dataclasses
from typing import Any

from ledger.models import UsageRecord
from ledger.rows import UsageRow


def row_default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def test_a_usage_row_has_every_column_of_the_record_in_table_order() -> None:
    columns = [field.attname for field in UsageRecord._meta.concrete_fields if not field.primary_key]

    assert [field.name for field in dataclasses.fields(UsageRow)] == columns


def test_a_usage_row_defaults_to_what_the_record_does_and_requires_the_rest() -> None:
    record_defaults = {field.attname: field.get_default() for field in UsageRecord._meta.concrete_fields}
    row_fields = dataclasses.fields(UsageRow)

    required = [field.name for field in row_fields if row_default(field) is dataclasses.MISSING]
    assert required == ["request_id", "endpoint", "created_at"]
    defaults = {field.name: row_default(field) for field in row_fields if field.name not in required}
    assert defaults == {name: record_defaults[name] for name in defaults}
