"""Budget counters on the tests' real Redis and PostgreSQL, with an injected clock: periods roll over, a
counter Redis lost is rebuilt from the ledger (once, however many processes try), rows still buffered
somewhere are caught up, and a call reserved on the lost counter is charged exactly once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from accounts.selectors import KeyInfo
from accounts.services import apikey_create
from budgets.counters import Spend, charge_for
from budgets.ledger import counter_sync
from budgets.models import Budget
from budgets.selectors import BudgetInfo, budget_info
from ledger.models import UsageRecord
from ledger.writer import usage_records_create
from routing import quota
from routing.budgeting import budgets_in_force
from routing.errors import GatewayError
from routing.limits import BudgetCost, admit_key_sync, settle_tokens_sync
from spignosapi.fastpath.redis_client import cache_redis

pytestmark = pytest.mark.django_db(transaction=True)

NOON = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def budget() -> tuple[KeyInfo, BudgetInfo]:
    cache_redis.sync_client().flushdb()
    key, _ = apikey_create(name="budgeted", rpm_limit=100_000, tpm_limit=10**9)
    row = Budget.objects.create(scope="key", metric="usd", period="day", limit=Decimal("1"), api_key=key)
    info = KeyInfo(key.pk, key.name, False, 100_000, 10**9, None, None, None, key.hashed_key)
    return info, budget_info(row)


def admit(key: KeyInfo, budget: BudgetInfo, amount: int, at: datetime) -> quota.Reservation | None:
    cost = BudgetCost(budget, "", amount)
    return admit_key_sync(key, prompt_tokens=1, max_tokens=1, budgets=[cost], clock=at.timestamp)


def spent_reserved(budget: BudgetInfo, at: datetime) -> tuple[int, int]:
    name = charge_for(budget, user_id="", now=at).name
    [state] = quota.state_sync(cache_redis.sync_client(), [name], now=at.timestamp())
    return state


def record(key: KeyInfo, cost: str, at: datetime) -> UsageRecord:
    row = UsageRecord(request_id=f"r-{at.timestamp()}", api_key_id=key.id, endpoint="generate", created_at=at)
    row.cost_usd = Decimal(cost)
    return row


def test_a_day_budget_refuses_until_midnight_then_rolls_over(budget: tuple[KeyInfo, BudgetInfo]) -> None:
    key, info = budget
    late = datetime(2026, 12, 5, 23, 59, 30, tzinfo=UTC)
    assert admit(key, info, 600_000, late) is not None
    with pytest.raises(GatewayError) as refused:
        admit(key, info, 600_000, late)  # 0.6 + 0.6 > 1 USD
    error = refused.value
    assert (error.code, error.reason.value, error.retry_after) == ("budget_exceeded", "quota_exceeded", 30)
    assert error.message == (
        f"Budget exceeded: the key's budget of 1 USD per day (budget {info.id}) is spent. "
        "It resets at 2026-12-06T00:00:00+00:00."
    )
    assert error.extra["budget"]["resets_at"] == "2026-12-06T00:00:00+00:00"

    after_midnight = late + timedelta(seconds=40)
    assert admit(key, info, 600_000, after_midnight) is not None  # a new day, a new counter
    assert spent_reserved(info, after_midnight) == (0, 600_000)
    assert spent_reserved(info, late) == (0, 600_000)  # yesterday's hold is still yesterday's


def test_a_call_that_can_never_fit_says_so(budget: tuple[KeyInfo, BudgetInfo]) -> None:
    key, info = budget
    with pytest.raises(GatewayError) as refused:
        admit(key, info, 1_000_001, NOON)
    assert "This request alone may cost more than the whole budget" in refused.value.message


def test_a_lost_counter_is_rebuilt_from_the_ledger_once(budget: tuple[KeyInfo, BudgetInfo]) -> None:
    key, info = budget
    yesterday = NOON - timedelta(days=1)
    usage_records_create(
        [record(key, "0.25", NOON - timedelta(hours=2)), record(key, "0.125", NOON), record(key, "9", yesterday)]
    )
    charge = charge_for(info, user_id="", now=NOON)

    def rebuild() -> None:
        try:
            counter_sync(charge, now=NOON.timestamp() + 1)
        finally:
            connection.close()

    # Two processes rebuild at once: the figure is set once.
    threads = [threading.Thread(target=rebuild) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert spent_reserved(info, NOON) == (375_000, 0)  # today's rows; yesterday's 9 USD are another period
    counter_sync(charge, now=NOON.timestamp() + 2)  # not due for its catch-up yet: nothing changes
    assert spent_reserved(info, NOON) == (375_000, 0)

    # 0.7 would pass the limit (0.375 + 0.7 > 1): refused on the rebuilt figure.
    with pytest.raises(GatewayError):
        admit(key, info, 700_000, NOON + timedelta(seconds=3))


def test_rows_still_buffered_at_the_rebuild_are_caught_up_once(
    budget: tuple[KeyInfo, BudgetInfo],
) -> None:
    key, info = budget
    usage_records_create([record(key, "0.25", NOON - timedelta(hours=1))])
    assert admit(key, info, 100_000, NOON) is not None  # rebuilds: 0.25 spent
    assert spent_reserved(info, NOON) == (250_000, 100_000)
    # A process flushes a row it booked before the rebuild, afterwards.
    usage_records_create([record(key, "0.125", NOON - timedelta(milliseconds=5))])
    later = NOON + timedelta(seconds=60)  # past BUDGET_LEDGER_CATCHUP_SECONDS
    assert admit(key, info, 100_000, later) is not None
    assert spent_reserved(info, later) == (375_000, 200_000)
    assert admit(key, info, 100_000, later + timedelta(seconds=60)) is not None
    assert spent_reserved(info, later) == (375_000, 300_000)  # caught up once


def test_a_call_reserved_on_a_lost_counter_is_charged_once(budget: tuple[KeyInfo, BudgetInfo]) -> None:
    key, info = budget
    before = admit(key, info, 100_000, NOON)
    booked_early = admit(key, info, 100_000, NOON)
    assert before is not None and booked_early is not None
    # Redis loses everything (the cluster test restarts a real one); the next admission rebuilds at W.
    cache_redis.sync_client().flushdb()
    rebuilt_at = NOON + timedelta(seconds=10)
    usage_records_create([record(key, "0.03", NOON + timedelta(seconds=5))])  # booked before W: in the ledger
    assert admit(key, info, 100_000, rebuilt_at) is not None
    assert spent_reserved(info, rebuilt_at) == (30_000, 100_000)

    # The call booked before W (its row is the one above) changes nothing: it is in the ledger's figure.
    settle_tokens_sync(booked_early, 2, Spend(0.03), booked_at=(NOON + timedelta(seconds=5)).timestamp())
    assert spent_reserved(info, rebuilt_at) == (30_000, 100_000)
    # The call booked after W is not in it: charged, once, though its hold was lost.
    settle_tokens_sync(before, 2, Spend(0.05), booked_at=(rebuilt_at + timedelta(seconds=1)).timestamp())
    settle_tokens_sync(before, 2, Spend(0.05), booked_at=(rebuilt_at + timedelta(seconds=1)).timestamp())
    assert spent_reserved(info, rebuilt_at) == (80_000, 100_000)


def test_the_micro_units_match_the_ledgers_sum() -> None:
    # What a call's settle adds and what the ledger's SQL sums must agree to the unit.
    assert Spend(0.0000125).micro("usd") == 13  # stored as 0.00001250, rounded half up
    assert Spend(1.23456789).micro("usd") == 1_234_568
    assert Spend(energy_wh=0.0000004).micro("wh") == 0
    assert Spend(co2e_g=2.5).micro("co2e_g") == 2_500_000


def test_budgets_in_force_reports_each_budget_for_keys_me(budget: tuple[KeyInfo, BudgetInfo]) -> None:
    key, info = budget
    reservation = admit(key, info, 400_000, NOON)
    settle_tokens_sync(reservation, 2, Spend(0.25), booked_at=NOON.timestamp())
    admit(key, info, 100_000, NOON)  # still running

    assert budgets_in_force(key, now=NOON.timestamp()) == [
        {
            "id": info.id,
            "scope": "key",
            "metric": "usd",
            "period": "day",
            "limit": 1.0,
            "spent": 0.25,
            "reserved": 0.1,
            "remaining": 0.65,
            "resets_at": "2026-12-06T00:00:00+00:00",
        }
    ]
