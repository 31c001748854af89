"""Per-model circuit breakers whose state lives in the database, shared by every process and host.

Closed → (``threshold`` consecutive retryable failures) → open → (``open_seconds`` later, one trial
request) → half-open → closed on success, open again on failure. Transitions are row-locked updates, so
concurrent processes never lose an increment. The hot path reads states from the cache (``states_for``:
one round trip for a whole chain, or none when admission reads ``cache_keys`` in its own); every
transition deletes the cached entry, and entries also expire after a few seconds, so a reader is never
stale for longer than that. Time comes from an injectable clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from spignosapi.fastpath.redis_client import cache_redis

from .models import CircuitBreaker

if TYPE_CHECKING:
    from .selectors import RoutingConfig

logger = logging.getLogger(__name__)
State = CircuitBreaker.State
CACHE_SECONDS = 5


@dataclass(frozen=True, slots=True)
class BreakerState:
    state: str
    failures: int
    opened_at: float | None
    trial_started_at: float | None

    @classmethod
    def of(cls, row: CircuitBreaker) -> BreakerState:
        return cls(row.state, row.consecutive_failures, row.opened_at, row.trial_started_at)


CLOSED = BreakerState(State.CLOSED, 0, None, None)


def _cache_key(model_pk: int) -> str:
    return f"breaker:{model_pk}"


class Breakers:
    def __init__(self, *, threshold: int, open_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.clock = clock

    # --- reads (hot path) ---
    def states(self, model_pks: Iterable[int]) -> dict[int, BreakerState]:
        """States from the cache, else the database; the cache is only a shortcut (Redis down: database)."""
        pks = list(model_pks)
        try:
            cached = cache.get_many([_cache_key(pk) for pk in pks])
        except Exception:
            logger.warning("breaker cache unavailable; reading the database", exc_info=True)
            cached = {}
        result: dict[int, BreakerState] = {}
        missing = []
        for pk in pks:
            value = cached.get(_cache_key(pk))
            if value is None:
                missing.append(pk)
            else:
                result[pk] = BreakerState(*value)
        if missing:
            found = {row.model_id: BreakerState.of(row) for row in CircuitBreaker.objects.filter(model_id__in=missing)}
            fresh = {}
            for pk in missing:
                result[pk] = found.get(pk, CLOSED)
                fresh[_cache_key(pk)] = tuple(
                    (result[pk].state, result[pk].failures, result[pk].opened_at, result[pk].trial_started_at)
                )
            _quietly(cache.set_many, fresh, CACHE_SECONDS)
        return result

    def admits(self, model_pk: int, state: BreakerState) -> tuple[bool, bool]:
        """(may this request use the model, is it the half-open trial). Claims the trial atomically."""
        if state.state == State.CLOSED:
            return True, False
        now = self.clock()
        due = now - self.open_seconds
        if state.state == State.OPEN and state.opened_at is not None and state.opened_at > due:
            return False, False
        if state.state == State.HALF_OPEN and state.trial_started_at is not None and state.trial_started_at > due:
            return False, False  # another request holds the trial
        claimed = CircuitBreaker.objects.filter(
            Q(state=State.OPEN, opened_at__lte=due) | Q(state=State.HALF_OPEN, trial_started_at__lte=due),
            model_id=model_pk,
        ).update(state=State.HALF_OPEN, trial_started_at=now, updated_at=timezone.now())
        self._forget(model_pk)
        return claimed == 1, claimed == 1

    # --- writes (after a call) ---
    def record_success(self, model_pk: int, state: BreakerState) -> None:
        if state.state == State.CLOSED and state.failures == 0:
            return  # the common case writes nothing
        with transaction.atomic():
            CircuitBreaker.objects.filter(model_id=model_pk).update(
                state=State.CLOSED,
                consecutive_failures=0,
                opened_at=None,
                trial_started_at=None,
                updated_at=timezone.now(),
            )
        self._forget(model_pk)

    def record_failure(self, model_pk: int, error: str) -> BreakerState:
        now = self.clock()
        with transaction.atomic():
            CircuitBreaker.objects.get_or_create(model_id=model_pk)
            row = CircuitBreaker.objects.select_for_update().get(model_id=model_pk)
            row.consecutive_failures += 1
            row.last_error = error[:300]
            if row.state == State.HALF_OPEN or (
                row.state == State.CLOSED and row.consecutive_failures >= self.threshold
            ):
                row.state = State.OPEN
                row.opened_at = now
                row.trial_started_at = None
            row.save(
                update_fields=[
                    "consecutive_failures",
                    "last_error",
                    "state",
                    "opened_at",
                    "trial_started_at",
                    "updated_at",
                ]
            )
        self._forget(model_pk)
        return BreakerState.of(row)

    def release(self, model_pk: int) -> None:
        """Give back a half-open trial that ended without a verdict (a non-retryable error, a spent budget).

        The breaker returns to open with its old ``opened_at``, which is already due, so the next request
        takes the trial instead of the model staying skipped until the claim goes stale.
        """
        released = CircuitBreaker.objects.filter(model_id=model_pk, state=State.HALF_OPEN).update(
            state=State.OPEN, trial_started_at=None, updated_at=timezone.now()
        )
        if released:
            self._forget(model_pk)

    def reset(self, model_pk: int) -> None:
        with transaction.atomic():
            CircuitBreaker.objects.update_or_create(
                model_id=model_pk,
                defaults={
                    "state": State.CLOSED,
                    "consecutive_failures": 0,
                    "opened_at": None,
                    "trial_started_at": None,
                    "last_error": "",
                },
            )
        self._forget(model_pk)

    def _forget(self, model_pk: int) -> None:
        # Without Redis there is nothing cached to forget (and entries expire within CACHE_SECONDS anyway).
        transaction.on_commit(lambda: _quietly(cache.delete, _cache_key(model_pk)))
        _quietly(cache.delete, _cache_key(model_pk))


# --- reads from the event loop (the gateway's hot path) ------------------------------------------------
#
# The same cache entries ``Breakers.states`` keeps, read through the fast-path Redis client (no thread, one
# round trip for the whole chain, or none: admission can read them in its own round trip).


def _chain_pks(config: RoutingConfig, chain: Sequence[str]) -> list[int]:
    return [config.models[m].pk for m in chain if m in config.models]


def cache_keys(config: RoutingConfig, chain: Sequence[str]) -> list[str]:
    """The Redis keys (prefixed as the cache stores them) of the cached states of ``chain``'s models, in
    ``states_for``'s order: for a caller that reads them in a round trip of its own (``limits.admit_key``)."""
    return [cache_redis.make_key(_cache_key(pk)) for pk in _chain_pks(config, chain)]


async def states_for(
    config: RoutingConfig, chain: Sequence[str], raw: Sequence[bytes | None] | None = None
) -> dict[int, BreakerState]:
    """The breaker states of ``chain``'s models, by model pk, from their cache entries (``raw``: the values
    of ``cache_keys``, when the caller has read them; else one round trip). A model without an entry
    (expired, or removed by a transition) goes through ``Breakers.states``, which reads the database and
    refills the cache."""
    pks = _chain_pks(config, chain)
    if not pks:
        return {}
    if raw is None:
        try:
            raw = await cache_redis.client().mget([cache_redis.make_key(_cache_key(pk)) for pk in pks])
        except Exception:  # Redis trouble: the synchronous path reports it as it always did
            raw = [None] * len(pks)
    states: dict[int, BreakerState] = {}
    missing = []
    for pk, value in zip(pks, raw, strict=True):
        if value is None:
            missing.append(pk)
        else:
            states[pk] = BreakerState(*cache_redis.loads(value))
    if missing:
        states.update(await _read_states(missing))
    return states


# Per event loop, the database reads of breaker states in flight (see ``_read_states``).
_reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, ...], asyncio.Task[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _states_sync(model_pks: Sequence[int]) -> dict[int, BreakerState]:
    return default_breakers().states(model_pks)


async def _read_states(pks: list[int]) -> dict[int, BreakerState]:
    """``Breakers.states`` in a thread, one read for all the requests that miss the same entries at once.

    Cache entries expire together (every few seconds): without this every request in flight at that
    moment would take a thread and query the database for the same rows.
    """
    loop = asyncio.get_running_loop()
    reads = _reads.setdefault(loop, {})
    key = tuple(pks)
    read = reads.get(key)
    if read is None:
        read = reads[key] = loop.create_task(sync_to_async(_states_sync, thread_sensitive=False)(pks))
        read.add_done_callback(lambda _: reads.pop(key, None))
    states: dict[int, BreakerState] = await asyncio.shield(read)
    return states


def _quietly(operation: Callable[..., object], *args: object) -> None:
    try:
        operation(*args)
    except Exception:
        logger.warning("breaker cache unavailable", exc_info=True)


def default_breakers() -> Breakers:
    from django.conf import settings

    return Breakers(threshold=settings.BREAKER_FAILURE_THRESHOLD, open_seconds=settings.BREAKER_OPEN_SECONDS)
