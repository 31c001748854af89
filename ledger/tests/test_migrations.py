"""The migration that gave the usage ledger its app (ledger 0001, with routing 0006 and energy 0003), run on a
database holding usage records and roll-ups written before it (django-test-migrations: the database is
migrated back, filled, migrated forward, then back again)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

# No accounts target: the first step applies all of accounts' migrations (planned first). Unapplying one in the
# same step as energy 0003 (planned later) makes Django return a state built from before energy 0003, with the
# newer accounts fields the table has just lost.
BEFORE = [
    ("routing", "0005_model_kind_local_provider"),
    ("energy", "0002_rollups_from_existing_usage"),
]
AFTER = [("ledger", "0001_initial")]
AT = datetime(2026, 11, 30, 8, 15, 30, 250000, tzinfo=UTC)
DELETED_KEY_ID = 987654  # usage records keep the id of a key deleted since (the column has no constraint)

RECORD_COLUMNS = (
    "id",
    "request_id",
    "api_key_id",
    "user_id",
    "endpoint",
    "category",
    "route_mode",
    "model",
    "provider",
    "attempts",
    "status",
    "error_code",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "latency_ms",
    "cost_usd",
    "energy_wh",
    "co2e_g",
    "energy_kwh_per_m",
    "energy_input_kwh_per_m",
    "energy_coefficient_id",
    "energy_estimated",
    "energy_wh_low",
    "energy_wh_high",
    "co2e_g_low",
    "co2e_g_high",
    "grid_g_co2e_per_kwh",
    "created_at",
)
ROLLUP_COLUMNS = ("day", "api_key_id", "requests", "prompt_tokens", "completion_tokens", "energy_wh", "cost_usd")


def record(request_id: str, api_key_id: int | None, **changes: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "api_key_id": api_key_id,
        "user_id": "alice",
        "endpoint": "chat",
        "category": "code",
        "route_mode": "keywords",
        "model": "demo/demo-fast",
        "provider": "demo",
        "attempts": [{"model": "demo/demo-smart", "outcome": "timeout"}, {"model": "demo/demo-fast", "outcome": "ok"}],
        "status": "ok",
        "error_code": "",
        "stream": True,
        "prompt_tokens": 12,
        "completion_tokens": 16,
        "ttft_ms": 41.5,
        "latency_ms": 120.25,
        "cost_usd": Decimal("0.00007600"),
        "energy_wh": 0.0084,
        "co2e_g": 0.00252,
        "energy_kwh_per_m": 0.3,
        "energy_input_kwh_per_m": None,
        "energy_coefficient_id": 17,
        "energy_estimated": False,
        "energy_wh_low": 0.0056,
        "energy_wh_high": 0.014,
        "co2e_g_low": 0.00168,
        "co2e_g_high": 0.0042,
        "grid_g_co2e_per_kwh": 300.0,
        "created_at": AT,
        **changes,
    }


def rows(model: Any, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return list(model.objects.order_by("id").values_list(*columns))


def table_indexes() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexname FROM pg_indexes WHERE tablename = ANY(%s) ORDER BY tablename, indexname",
            [["routing_usagerecord", "energy_usagedaily", "energy_usagedailybyuser"]],
        )
        found: dict[str, list[str]] = {}
        for table, index in cursor.fetchall():
            found.setdefault(table, []).append(index)
        return found


def test_usage_records_and_rollups_move_to_the_ledger_without_losing_a_row_and_back(migrator: Any) -> None:
    migrator.apply_initial_migration(BEFORE)
    # That applies every migration planned before the last target, energy 0003 among them: this takes it back.
    old = migrator.apply_tested_migration(BEFORE)
    ApiKey = old.apps.get_model("accounts", "ApiKey")
    key = ApiKey.objects.create(name="ci", prefix="spg-ledger01", hashed_key="b" * 64)
    UsageRecord = old.apps.get_model("routing", "UsageRecord")
    given = [
        record("req-1", key.pk),
        record("req-2", None, user_id="", endpoint="embeddings", status="error", error_code="upstream_timeout",
               stream=False, ttft_ms=None, energy_estimated=True, energy_kwh_per_m=None, energy_coefficient_id=None,
               grid_g_co2e_per_kwh=None, attempts=[]),
        record("req-3", DELETED_KEY_ID, energy_input_kwh_per_m=0.05, cost_usd=Decimal("1.25000000")),
    ]  # fmt: skip
    for values in given:
        UsageRecord.objects.create(**values)
    before_records = rows(UsageRecord, RECORD_COLUMNS)
    UsageDaily = old.apps.get_model("energy", "UsageDaily")
    UsageDailyByUser = old.apps.get_model("energy", "UsageDailyByUser")
    UsageDaily.objects.create(
        day=date(2026, 11, 30), api_key_id=key.pk, model="demo/demo-fast", provider="demo", requests=2,
        prompt_tokens=24, completion_tokens=32, energy_wh=0.0168, cost_usd=Decimal("1.25007600"),
    )  # fmt: skip
    UsageDailyByUser.objects.create(
        day=date(2026, 11, 30), api_key_id=0, user_id="", requests=1, prompt_tokens=12, completion_tokens=16,
        energy_wh=0.0084, cost_usd=Decimal("0.00007600"),
    )  # fmt: skip
    ContentType = old.apps.get_model("contenttypes", "ContentType")
    Permission = old.apps.get_model("auth", "Permission")
    usage_type = ContentType.objects.create(app_label="routing", model="usagerecord")
    view = Permission.objects.create(content_type=usage_type, codename="view_usagerecord", name="Can view")
    indexes = table_indexes()

    new = migrator.apply_tested_migration(AFTER)
    UsageRecord = new.apps.get_model("ledger", "UsageRecord")
    assert rows(UsageRecord, RECORD_COLUMNS) == before_records
    assert [values for _, *values in before_records] == [
        [given_row[c] for c in RECORD_COLUMNS[1:]] for given_row in given
    ]
    assert UsageRecord.objects.get(request_id="req-1").api_key.name == "ci"  # the foreign key still joins
    assert rows(new.apps.get_model("ledger", "UsageDaily"), ROLLUP_COLUMNS + ("model", "provider")) == [
        (date(2026, 11, 30), key.pk, 2, 24, 32, 0.0168, Decimal("1.25007600"), "demo/demo-fast", "demo")
    ]
    assert rows(new.apps.get_model("ledger", "UsageDailyByUser"), ROLLUP_COLUMNS + ("user_id",)) == [
        (date(2026, 11, 30), 0, 1, 12, 16, 0.0084, Decimal("0.00007600"), "")
    ]
    assert table_indexes() == indexes
    ContentType = new.apps.get_model("contenttypes", "ContentType")
    assert list(ContentType.objects.filter(model="usagerecord").values_list("pk", "app_label")) == [
        (usage_type.pk, "ledger")
    ]
    assert new.apps.get_model("auth", "Permission").objects.get(pk=view.pk).content_type_id == usage_type.pk
    # The table's sequence goes on from the rows it holds.
    added = UsageRecord.objects.create(**record("req-4", None))
    assert added.pk == before_records[-1][0] + 1

    back = migrator.apply_tested_migration(BEFORE)
    UsageRecord = back.apps.get_model("routing", "UsageRecord")
    assert [row[1] for row in rows(UsageRecord, RECORD_COLUMNS)] == ["req-1", "req-2", "req-3", "req-4"]
    assert rows(UsageRecord, RECORD_COLUMNS)[:3] == before_records
    assert back.apps.get_model("energy", "UsageDaily").objects.get().requests == 2
    assert back.apps.get_model("energy", "UsageDailyByUser").objects.get().requests == 1
    assert table_indexes() == indexes
    ContentType = back.apps.get_model("contenttypes", "ContentType")
    assert ContentType.objects.get(pk=usage_type.pk).app_label == "routing"
