"""The usage buffer: rows written with one COPY, exactly as given, counted into the roll-ups; a bad row does not
hold back the others."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledger.buffer import UsageBuffer
from ledger.models import UsageDaily, UsageDailyByUser, UsageRecord
from ledger.rows import UsageRow
from ledger.writer import usage_rows_write

pytestmark = pytest.mark.django_db(transaction=True)

# A day of its own: rows other tests' requests leave (flushed by this process's buffer) are of today.
AT = datetime(2026, 5, 4, 23, 59, 59, 500000, tzinfo=UTC)
DAY = date(2026, 5, 4)


def row(request_id: str, **changes: Any) -> UsageRow:
    values: dict[str, Any] = {
        "request_id": request_id,
        "api_key_id": None,
        "user_id": "alice",
        "endpoint": "chat",
        "category": "code",
        "route_mode": "keywords",
        "model": "demo/demo-fast",
        "provider": "demo",
        "attempts": [{"model": "demo/demo-fast", "ok": True, "error": 'tab\there, quote " and newline\n'}],
        "status": "ok",
        "error_code": "",
        "stream": True,
        "prompt_tokens": 12,
        "completion_tokens": 16,
        "ttft_ms": None,
        "latency_ms": 1.25,
        "cost_usd": Decimal("0.00001230"),
        "energy_wh": 0.5,
        "co2e_g": 0.25,
        "energy_wh_low": 0.125,
        "energy_wh_high": 1.0,
        "energy_estimated": True,
        "created_at": AT,
    }
    return UsageRow(**{**values, **changes})


def test_it_writes_every_field_as_given_and_counts_the_rows_into_the_rollups() -> None:
    buffer = UsageBuffer(background=False)
    buffer.add(row("r1"))
    buffer.add(row("r2", api_key_id=42, user_id="", ttft_ms=3.5, cost_usd=Decimal("0.5"), energy_estimated=False))

    assert buffer.flush() == 2
    assert len(buffer) == 0

    first, second = UsageRecord.objects.filter(request_id__in=["r1", "r2"]).order_by("request_id")
    assert first.attempts == [{"model": "demo/demo-fast", "ok": True, "error": 'tab\there, quote " and newline\n'}]
    assert (first.api_key_id, first.user_id, first.stream, first.ttft_ms, first.created_at) == (
        None,
        "alice",
        True,
        None,
        AT,
    )
    assert (first.cost_usd, first.energy_wh_low, first.energy_kwh_per_m, first.co2e_g_low) == (
        Decimal("0.00001230"),
        0.125,
        None,
        0.0,  # not given: the model's default
    )
    assert (second.api_key_id, second.ttft_ms, second.cost_usd) == (42, 3.5, Decimal("0.5"))

    by_model = {
        (r.api_key_id, r.model): (r.requests, r.prompt_tokens, r.cost_usd, r.energy_wh, r.estimated_requests)
        for r in UsageDaily.objects.filter(day=DAY)
    }
    assert by_model == {
        (0, "demo/demo-fast"): (1, 12, Decimal("0.00001230"), 0.5, 1),
        (42, "demo/demo-fast"): (1, 12, Decimal("0.50000000"), 0.5, 0),
    }
    assert {(r.user_id, r.requests) for r in UsageDailyByUser.objects.filter(day=DAY)} == {("alice", 1), ("", 1)}


def test_a_row_that_cannot_be_stored_is_dropped_and_logged_without_losing_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = UsageBuffer(background=False)
    buffer.add(row("good-1"))
    buffer.add(row("too-long", category="x" * 51))  # the column holds 50
    buffer.add(row("good-2"))

    with caplog.at_level(logging.ERROR, logger="ledger.buffer"):
        assert buffer.flush() == 2

    written = UsageRecord.objects.filter(created_at=AT).values_list("request_id", flat=True)
    assert sorted(written) == ["good-1", "good-2"]
    assert [r.getMessage() for r in caplog.records] == ["usage record too-long dropped: it cannot be written"]
    assert UsageDaily.objects.get(day=DAY).requests == 2
    assert len(buffer) == 0


def test_a_row_with_a_value_the_record_refuses_is_refused_alone(caplog: pytest.LogCaptureFixture) -> None:
    # A field the record does not have is a TypeError where the UsageRow is made (and a mypy error before):
    # what still reaches the writer is a value of the right type that a column's constraint refuses.
    buffer = UsageBuffer(background=False)
    buffer.add(row("typo", completion_tokens=-3))
    buffer.add(row("fine"))

    with caplog.at_level(logging.ERROR, logger="ledger.buffer"):
        assert buffer.flush() == 1

    assert list(UsageRecord.objects.filter(created_at=AT).values_list("request_id", flat=True)) == ["fine"]
    assert [r.getMessage() for r in caplog.records] == ["usage record typo dropped: it cannot be written"]


def test_the_writer_for_other_databases_stores_the_same_rows() -> None:
    # make run's SQLite has no COPY: there the writer takes bulk_create (run here on PostgreSQL, same rows).
    usage_rows_write([row("bulk-1"), row("bulk-2", api_key_id=7, ttft_ms=2.5)], copy=False)

    first, second = UsageRecord.objects.filter(request_id__in=["bulk-1", "bulk-2"]).order_by("request_id")
    assert first.attempts == row("x").attempts
    assert (first.api_key_id, first.cost_usd, first.created_at, first.co2e_g_low) == (
        None,
        Decimal("0.00001230"),
        AT,
        0.0,
    )
    assert (second.api_key_id, second.ttft_ms) == (7, 2.5)
    assert {(r.api_key_id, r.requests) for r in UsageDaily.objects.filter(day=DAY)} == {(0, 1), (7, 1)}
