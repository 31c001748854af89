"""The reserve/reconcile primitive (routing/quota.py) on the tests' real Redis, with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from routing import quota
from spignosapi.fastpath.redis_client import cache_redis

NOW = 1_000_000.0
T = TypeVar("T")


@pytest.fixture
def names() -> Iterator[list[str]]:
    names = [f"test-quota:{i}" for i in range(2)]
    keys = [key for name in names for key in (name, quota.holds_key(name), quota.holds_key(name) + ":lapsed")]
    cache_redis.sync_client().delete(*keys)
    yield names
    cache_redis.sync_client().delete(*keys)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """One event loop per call, as a Celery task has (the client is per loop)."""
    return asyncio.run(coroutine)


async def reserve(
    counters: list[quota.Counter], now: float = NOW, hold_s: float = 60
) -> quota.Reservation | quota.Counter:
    return await quota.reserve(cache_redis.client(), counters, now=now, hold_until=now + hold_s)


async def reconcile(reservation: quota.Reservation, used: list[int]) -> int:
    return await quota.reconcile(cache_redis.client(), reservation, used)


def state(names: list[str], now: float = NOW) -> list[tuple[int, int]]:
    return quota.state_sync(cache_redis.sync_client(), names, now=now)


def test_it_reserves_on_every_counter_or_on_none(names: list[str]) -> None:
    tokens, dollars = names
    first = run(reserve([quota.Counter(tokens, 60, 100), quota.Counter(dollars, 5, 10)]))
    assert isinstance(first, quota.Reservation)
    assert first.holds == ((tokens, 60), (dollars, 5))
    assert state(names) == [(0, 60), (0, 5)]

    # The tokens would fit (60 + 30 <= 100), the dollars would not (5 + 6 > 10): neither is touched.
    over = quota.Counter(dollars, 6, 10)
    assert run(reserve([quota.Counter(tokens, 30, 100), over])) == over
    assert state(names) == [(0, 60), (0, 5)]

    assert isinstance(run(reserve([quota.Counter(tokens, 40, 100), quota.Counter(dollars, 5, 10)])), quota.Reservation)
    assert state(names) == [(0, 100), (0, 10)]  # up to the limit exactly


def test_a_reconcile_turns_the_reservation_into_what_was_used_once(names: list[str]) -> None:
    tokens, dollars = names
    reservation = run(reserve([quota.Counter(tokens, 60, 100), quota.Counter(dollars, 5, 10)]))
    assert isinstance(reservation, quota.Reservation)

    assert run(reconcile(reservation, [25, 7])) == 2
    # More than reserved is still booked: the call is over, only admission refuses.
    assert state(names) == [(25, 0), (7, 0)]
    # Again, from this process or another (the sync client, the handle through JSON): nothing changes.
    assert run(reconcile(reservation, [25, 7])) == 0
    copy = quota.Reservation.from_dict(reservation.as_dict())
    assert quota.reconcile_sync(cache_redis.sync_client(), copy, [25, 7]) == 0
    assert state(names) == [(25, 0), (7, 0)]


def test_a_release_gives_the_whole_reservation_back(names: list[str]) -> None:
    tokens = names[0]
    reservation = run(reserve([quota.Counter(tokens, 100, 100)]))
    assert isinstance(reservation, quota.Reservation)
    assert isinstance(run(reserve([quota.Counter(tokens, 1, 100)])), quota.Counter)
    assert quota.reconcile_sync(cache_redis.sync_client(), reservation, [0]) == 1
    assert state(names[:1]) == [(0, 0)]
    assert isinstance(run(reserve([quota.Counter(tokens, 100, 100)])), quota.Reservation)


def test_a_hold_never_reconciled_in_time_lapses_and_frees_its_capacity(names: list[str]) -> None:
    tokens = names[0]
    forgotten = run(reserve([quota.Counter(tokens, 80, 100)], now=NOW, hold_s=30))
    assert isinstance(forgotten, quota.Reservation)
    assert isinstance(run(reserve([quota.Counter(tokens, 30, 100)], now=NOW + 29)), quota.Counter)
    assert state(names[:1], now=NOW + 29.9) == [(0, 80)]

    assert state(names[:1], now=NOW + 30) == [(0, 0)]  # lapsed at its hold_until
    later = run(reserve([quota.Counter(tokens, 30, 100)], now=NOW + 30))
    assert isinstance(later, quota.Reservation)
    # The process that made it comes back late: what its call used is still charged (the capacity was freed),
    # once.
    assert quota.reconcile_sync(cache_redis.sync_client(), forgotten, [80]) == 1
    assert state(names[:1], now=NOW + 30) == [(80, 30)]
    assert quota.reconcile_sync(cache_redis.sync_client(), forgotten, [80]) == 0
    assert state(names[:1], now=NOW + 30) == [(80, 30)]


def test_concurrent_reservations_never_pass_the_limit(names: list[str]) -> None:
    tokens = names[0]

    async def burst() -> list[quota.Reservation | quota.Counter]:
        return await asyncio.gather(*(reserve([quota.Counter(tokens, 208, 2000)]) for _ in range(40)))

    results = run(burst())
    granted = [r for r in results if isinstance(r, quota.Reservation)]
    assert len(granted) == 9  # 9 * 208 = 1872; a tenth would make 2080
    assert len({r.id for r in granted}) == 9
    assert state(names[:1]) == [(0, 1872)]


def test_a_counter_lives_until_its_expiry_and_a_counter_without_one_for_ever(names: list[str]) -> None:
    minute, total = names
    run(reserve([quota.Counter(minute, 1, 10, expires_at=int(NOW) + 90), quota.Counter(total, 1, 10)]))
    assert 88 <= cache_redis.sync_client().ttl(minute) <= 90
    assert 88 <= cache_redis.sync_client().ttl(quota.holds_key(minute)) <= 90
    assert cache_redis.sync_client().ttl(total) == -1  # no expiry


def test_it_refuses_to_reserve_a_negative_amount(names: list[str]) -> None:
    with pytest.raises(ValueError, match="negative amount"):
        quota.plan([quota.Counter(names[0], -1, 10)], now=NOW, hold_until=NOW + 1)
