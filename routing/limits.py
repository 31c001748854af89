"""Limits shared by every process through Redis.

* Inbound, per API key: requests per minute (django-ratelimit's fixed window) and tokens per minute, plus
  caps on ``max_tokens`` and on the prompt's size. Over a limit: 429 with ``Retry-After``. Tokens per
  minute are a quota (``routing.quota``): admission reserves the most the call can use (its prompt plus
  ``max_tokens`` for each of its choices: ``n``) and ``settle_tokens`` turns that into what it used, so a
  burst of concurrent requests cannot overrun the key's minute.
* Outbound, per model: the budget the provider allows us (requests and tokens per minute) as token
  buckets in Redis, so the platform never earns 429s from its own providers; a spent model is skipped.

When Redis cannot be reached the limits fail open (the request goes on, a warning is logged): an outage of
the limiter should not become an outage of the gateway.

The gateway's hot path uses the async versions (``admit_key``, ``settle_tokens``, ``OutboundBudgets.atake``):
one round trip to Redis from the event loop each, on the fast-path client (``spignosapi.fastpath.redis_client``,
one connection per process and loop), on the very keys and values the synchronous versions (and
django-ratelimit) use. The synchronous versions remain for sync callers (the session's async-job submission,
tests), on the cache's one pool per process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key, get_usage

from accounts.selectors import KeyInfo
from budgets.alerts import thresholds_check
from budgets.counters import NOTHING, Charge, Spend, charge_for, hold_seconds, metric_of, over_budget
from budgets.ledger import NEEDS_SYNC_LUA, counter_sync
from budgets.selectors import BudgetInfo
from spignosapi.fastpath.redis_client import cache_redis

from . import quota
from .errors import GatewayError, Reason

logger = logging.getLogger(__name__)
TPM_WINDOW_S = 60


RPM_GROUP = "gateway"


def _rpm_rate(key: KeyInfo) -> tuple[int, str]:
    limit = key.rpm_limit or settings.DEFAULT_RPM_LIMIT
    return limit, f"{limit}/m"


def _rpm_limited(limit: int, time_left: int) -> GatewayError:
    return GatewayError(
        f"Rate limit reached: {limit} requests per minute for this key.",
        reason=Reason.RATE_LIMITED,
        code="rpm_limit_exceeded",
        retryable=True,
        retry_after=int(time_left) + 1,
    )


def _tpm_limited(counter: quota.Counter, retry_after: int, choices: int) -> GatewayError:
    whose = "its team" if ":team:" in counter.name else "this key"
    message = f"Token limit reached: {counter.limit} tokens per minute for {whose}."
    if counter.amount > counter.limit:  # no minute will ever admit it: say why
        completion = "max_tokens" if choices == 1 else f"max_tokens for each of its {choices} choices"
        fewer = "" if choices == 1 else ", ask for fewer choices"
        message = (
            f"This request may use {counter.amount} tokens (its prompt and {completion}); {whose} allows "
            f"{counter.limit} tokens per minute. Lower max_tokens{fewer} or shorten the prompt."
        )
    return GatewayError(
        message, reason=Reason.RATE_LIMITED, code="tpm_limit_exceeded", retryable=True, retry_after=retry_after
    )


def caps_error(key: KeyInfo, *, prompt_tokens: int, max_tokens: int) -> GatewayError | None:
    cap = key.max_tokens_cap or settings.DEFAULT_MAX_TOKENS_CAP
    if max_tokens > cap:
        return GatewayError(
            f"max_tokens must be at most {cap} for this key.",
            reason=Reason.INVALID,
            code="max_tokens_too_large",
            param="max_tokens",
        )
    prompt_cap = key.max_prompt_tokens or settings.DEFAULT_MAX_PROMPT_TOKENS
    if prompt_tokens > prompt_cap:
        return GatewayError(
            f"The prompt has {prompt_tokens} tokens; this key accepts at most {prompt_cap}.",
            reason=Reason.INVALID,
            code="prompt_too_large",
            param="prompt",
        )
    return None


def tpm_counter_name(key_id: int, now: float) -> str:
    """The Redis key of the key's tokens-per-minute counter for the minute of ``now``."""
    return cache_redis.make_key(f"tpm:{key_id}:{int(now // TPM_WINDOW_S)}")


def _tpm_counter(key: KeyInfo, tokens: int, now: float) -> quota.Counter:
    """The key's tokens/minute for the minute of ``now``. It is kept a minute past its end: a call
    admitted late in the minute still finds it to reconcile."""
    window_end = (int(now // TPM_WINDOW_S) + 1) * TPM_WINDOW_S
    limit = key.tpm_limit or settings.DEFAULT_TPM_LIMIT
    return quota.Counter(tpm_counter_name(key.id, now), tokens, limit, expires_at=window_end + TPM_WINDOW_S)


# Two token buckets per model (requests, tokens), checked and debited together, atomically. A bucket
# refills continuously (capacity per 60 s); a negative cost refunds, never above the capacity.
_BUCKET_LUA = """
local now = tonumber(ARGV[1])
local force = tonumber(ARGV[6])
local allowed = 1
local state = {}
for i = 1, 2 do
  local capacity = tonumber(ARGV[2 + (i - 1) * 2])
  local cost = tonumber(ARGV[3 + (i - 1) * 2])
  local tokens, ts = capacity, now
  if capacity > 0 then
    local data = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    if data[1] then
      tokens = tonumber(data[1]); ts = tonumber(data[2])
      tokens = math.min(capacity, tokens + (now - ts) * capacity / 60.0)
    end
    if force == 0 and cost > 0 and tokens < cost then allowed = 0 end
  end
  state[i] = tokens
end
for i = 1, 2 do
  local capacity = tonumber(ARGV[2 + (i - 1) * 2])
  if capacity > 0 then
    local cost = tonumber(ARGV[3 + (i - 1) * 2])
    local tokens = state[i]
    if allowed == 1 then tokens = math.min(capacity, tokens - cost) end
    redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'ts', tostring(now))
    redis.call('EXPIRE', KEYS[i], 120)
  end
end
return allowed
"""


# One round trip for a key's admission. KEYS: the key's requests/minute counter (django-ratelimit's), its
# team's, its parallel-request slots, then the quota counters (from KEYS[4]: the key's tokens/minute, its
# team's, then one per budget in force), then keys to read. ARGV: [1] the key's RPM limit (0: the rate
# limiter is disabled, count nothing), [2] that counter's TTL, [3] the caps verdict computed by the caller
# (1 ok), [4] the team's RPM limit (0: none), [5] the parallel limit (0: none), [6] a slot's lease end, [7] the
# slot's id, [8] now, [9] the position of the first budget among the quota counters, then the quota
# reservation's arguments from ARGV[10]. First the budgets' counters: one that is not rebuilt from the ledger
# yet (or is due for its catch-up) stops the step before anything changed, as {6, its budget positions}: the
# caller rebuilds it and tries again (budgets.ledger). Then, in that order: RPM (key, team), caps, parallel
# requests, quota. Returns {verdict, n}: 0 admitted, 1 over the key's RPM (n: the count), 2 over a cap, 3 over
# a quota (n: which counter), 4 over the team's RPM, 5 over the parallel limit; when admitted, followed by
# the values of the keys after the counters' (the gateway's breaker entries).
_ADMIT_LUA = (
    quota.RESERVE_LUA
    + NEEDS_SYNC_LUA
    + """
local counters, first_budget = tonumber(ARGV[13]), tonumber(ARGV[9])
local unsynced = {6}
for i = first_budget, counters do
  if budget_needs_sync(KEYS[2 + 2 * i], ARGV[10]) ~= 0 then unsynced[#unsynced + 1] = i - first_budget + 1 end
end
if #unsynced > 1 then return unsynced end
local count = 0
if ARGV[1] ~= '0' then
  if redis.call('SET', KEYS[1], 1, 'EX', ARGV[2], 'NX') then count = 1 else count = redis.call('INCR', KEYS[1]) end
  if count > tonumber(ARGV[1]) then return {1, count} end
  if ARGV[4] ~= '0' then
    local team = 1
    if not redis.call('SET', KEYS[2], 1, 'EX', ARGV[2], 'NX') then team = redis.call('INCR', KEYS[2]) end
    if team > tonumber(ARGV[4]) then return {4, team} end
  end
end
if ARGV[3] == '0' then return {2, count} end
local parallel = tonumber(ARGV[5])
if parallel > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[8])
  if redis.call('ZCARD', KEYS[3]) >= parallel then
    return {5, parallel}
  end
end
local over = quota_reserve(4, 10)
if over > 0 then return {3, over} end
if parallel > 0 then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[7])
  redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[6]) - tonumber(ARGV[8])) + 60)
end
local out = {0, count}
for i = 4 + 2 * counters, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) end
return out
"""
)
# A counter rebuilt by another process between two tries is found ready; one that is not is tried again.
_SYNC_TRIES = 3


@dataclass(frozen=True, slots=True)
class BudgetCost:
    """A budget the call is under and the most the call can cost against it (millionths of its unit)."""

    budget: BudgetInfo
    user_id: str
    amount: int


_RELEASE_SLOT_LUA = "return redis.call('ZREM', KEYS[1], ARGV[1])"


@dataclass(frozen=True, slots=True)
class Slot:
    """One of a key's parallel-request slots, held from admission until the call is booked (or its lease
    lapses: a process killed mid-call does not hold it for ever)."""

    name: str  # the key's sorted set of slots
    id: str


@dataclass(frozen=True, slots=True)
class Admitted:
    """A key's admission: its tokens reservation (None when the limiter was unavailable: nothing to settle),
    its parallel-request slot (None: no such limit), and the raw values of the keys it was asked to read
    (None each when they could not be read)."""

    reservation: quota.Reservation | None
    reads: list[bytes | None] | None
    slot: Slot | None = None


def parallel_slots_name(key_id: int) -> str:
    return cache_redis.make_key(f"parallel:{key_id}")


def team_rpm_counter_name(team_id: int, now: float) -> str:
    return cache_redis.make_key(f"rpm:team:{team_id}:{int(now // 60)}")


def team_tpm_counter_name(team_id: int, now: float) -> str:
    return cache_redis.make_key(f"tpm:team:{team_id}:{int(now // TPM_WINDOW_S)}")


class _Admission:
    """One admission's keys and arguments for ``_ADMIT_LUA``, and how to read its verdict."""

    def __init__(
        self,
        key: KeyInfo,
        prompt_tokens: int,
        max_tokens: int,
        choices: int,
        clock: Callable[[], float],
        budgets: Sequence[BudgetCost] = (),
        *,
        hold_slot: bool = True,
    ) -> None:
        self.key = key
        self.caps = caps_error(key, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
        self.choices = choices
        self.limit, rate = _rpm_rate(key)
        value = str(key.id)
        self.window = _get_window(value, 60)
        rpm_key = cache_redis.make_key(_make_cache_key(RPM_GROUP, self.window, rate, value, get_usage.ALL))
        now = self.now = clock()
        # The most the call can use: its prompt and every token it may generate (max_tokens, at most the
        # key's cap, else the caps refuse it, for each of its choices).
        most = max(prompt_tokens, 0) + max(max_tokens, 0) * max(choices, 1)
        self.tpm = [_tpm_counter(key, most, now)]
        if key.team_id is not None and key.team_tpm_limit:
            # The team's minute: every key of the team reserves on the one counter.
            self.tpm.append(
                quota.Counter(team_tpm_counter_name(key.team_id, now), most, key.team_tpm_limit, self.tpm[0].expires_at)
            )
        self.retry_after = int(TPM_WINDOW_S - now % TPM_WINDOW_S) + 1
        # Each budget in force, in the period of ``now``: its hold outlives the minute's (a long call must
        # keep its budget reserved to its end).
        self.moment = datetime.fromtimestamp(now, UTC)
        self.budgets = [
            (charge_for(cost.budget, user_id=cost.user_id, now=self.moment), cost.amount) for cost in budgets
        ]
        budget_hold_until = now + hold_seconds()
        spend = [
            quota.Counter(c.name, amount, c.budget.limit_micro, c.expires_at, budget_hold_until)
            for c, amount in self.budgets
        ]
        # A tokens hold lives as long as its minute's counter: a reservation never settled ends with the minute.
        self.reserve = quota.plan([*self.tpm, *spend], now=now, hold_until=self.tpm[0].expires_at)
        team_rpm = key.team_rpm_limit if key.team_id is not None and key.team_rpm_limit else 0
        team_rpm_key = team_rpm_counter_name(key.team_id or 0, now)
        parallel = (key.max_parallel_requests or 0) if hold_slot else 0
        self.slot = Slot(parallel_slots_name(key.id), os.urandom(8).hex()) if parallel else None
        self.keys = [rpm_key, team_rpm_key, parallel_slots_name(key.id), *self.reserve.keys]
        caps_ok = 0 if self.caps else 1
        rpm_limit = self.limit if _limits_enabled() else 0  # django-ratelimit counts nothing when disabled
        lease_end = now + settings.KEY_PARALLEL_LEASE_S
        slot_id = self.slot.id if self.slot else ""
        self.args = [rpm_limit, 60 + EXPIRATION_FUDGE, caps_ok, team_rpm, parallel, repr(lease_end), slot_id]
        self.args += [repr(now), len(self.tpm) + 1, *self.reserve.args]

    def unavailable(self) -> Admitted:
        logger.warning("rate limiter unavailable; letting the request through", exc_info=True)
        if self.caps is not None:
            raise self.caps from None
        return Admitted(None, None)

    def verdict(self, reply: list[Any]) -> Admitted:
        verdict = reply[0]
        if verdict == 1:
            raise _rpm_limited(self.limit, self.window - int(time.time()))
        if verdict == 2:
            assert self.caps is not None
            raise self.caps
        if verdict == 6:  # still not rebuilt after _SYNC_TRIES: the ledger could not be read in time
            raise GatewayError(
                "The budgets of this key could not be checked just now; try again.",
                reason=Reason.UNAVAILABLE,
                code="budget_unavailable",
                retryable=True,
                retry_after=1,
            )
        if verdict == 3 and reply[1] > len(self.tpm):
            charge, amount = self.budgets[reply[1] - len(self.tpm) - 1]
            raise over_budget(charge, amount=amount, now=self.moment, error=GatewayError)
        if verdict == 3:
            raise _tpm_limited(self.tpm[reply[1] - 1], self.retry_after, self.choices)
        if verdict == 4:
            raise _team_rpm_limited(self.key, int(60 - self.now % 60) + 1)
        if verdict == 5:
            raise _parallel_limited(self.key)
        return Admitted(self.reserve.reservation, list(reply[2:]), self.slot)

    def unsynced(self, reply: list[Any]) -> list[Charge]:
        """The budget counters the reply asks to rebuild from the ledger (none: it is a verdict)."""
        return [self.budgets[i - 1][0] for i in reply[1:]] if reply[0] == 6 else []

    def sync(self, charges: Sequence[Charge]) -> None:
        """Rebuild those counters from the ledger (database reads, off the hot path: once per period and
        budget, and after Redis lost them)."""
        for charge in charges:
            counter_sync(charge, now=self.now)


def _team_rpm_limited(key: KeyInfo, retry_after: int) -> GatewayError:
    return GatewayError(
        f"Rate limit reached: {key.team_rpm_limit} requests per minute for the team {key.team_name!r}.",
        reason=Reason.RATE_LIMITED,
        code="rpm_limit_exceeded",
        retryable=True,
        retry_after=retry_after,
    )


def _parallel_limited(key: KeyInfo) -> GatewayError:
    return GatewayError(
        f"Too many requests at once: this key may have {key.max_parallel_requests} under way.",
        reason=Reason.RATE_LIMITED,
        code="parallel_limit_exceeded",
        retryable=True,
        retry_after=1,  # a slot frees as soon as one of the key's requests ends
    )


def _limits_enabled() -> bool:
    return bool(getattr(settings, "RATELIMIT_ENABLE", True))


def admit_key_sync(
    key: KeyInfo,
    *,
    prompt_tokens: int,
    max_tokens: int,
    choices: int = 1,
    budgets: Sequence[BudgetCost] = (),
    clock: Callable[[], float] = time.time,
) -> quota.Reservation | None:
    """``admit_key`` for synchronous callers (the session's async-job submission), on the process's pool."""
    # No parallel-request slot: the call runs later, in a worker (the workers' concurrency bounds it).
    admission = _Admission(key, prompt_tokens, max_tokens, choices, clock, budgets, hold_slot=False)
    try:
        for _ in range(_SYNC_TRIES):
            reply = cache_redis.sync_script(_ADMIT_LUA)(keys=admission.keys, args=admission.args)
            unsynced = admission.unsynced(reply)
            if not unsynced:
                break
            admission.sync(unsynced)
    except Exception:
        return admission.unavailable().reservation
    return admission.verdict(reply).reservation


async def admit_key(
    key: KeyInfo,
    *,
    prompt_tokens: int,
    max_tokens: int,
    choices: int = 1,
    read: Sequence[str] = (),
    budgets: Sequence[BudgetCost] = (),
    hold_slot: bool = True,
    clock: Callable[[], float] = time.time,
) -> Admitted:
    """The key's (and its team's) requests/minute, its caps, a parallel-request slot and its (and its team's)
    tokens/minute reservation, in one round trip.

    In that order: a request refused on its caps still counts against the key's requests/minute, and one
    refused on any limit reserves nothing. The reservation (the prompt plus ``max_tokens`` for each of
    the call's ``choices``) must be settled with ``settle_tokens`` once the call is over, whatever its
    outcome, and the slot given back with ``release_slot``. ``hold_slot=False``: the call runs later, in a
    worker, and takes no slot. The same round trip reads the (already prefixed) cache keys ``read``.

    ``budgets``: the budgets the call is under, each with the most the call can cost, reserved in the same
    step (refused: 429 ``budget_exceeded``). A budget counter that Redis does not hold yet is rebuilt from
    the ledger first (``budgets.ledger``: a thread, a query), then the step is tried again.
    """
    admission = _Admission(key, prompt_tokens, max_tokens, choices, clock, budgets, hold_slot=hold_slot)
    try:
        for _ in range(_SYNC_TRIES):
            reply = await cache_redis.client().script(_ADMIT_LUA, [*admission.keys, *read], admission.args)
            unsynced = admission.unsynced(reply)
            if not unsynced:
                break
            await sync_to_async(admission.sync, thread_sensitive=False)(unsynced)
    except Exception:
        return admission.unavailable()
    return admission.verdict(reply)


def _amounts(reservation: quota.Reservation, used: int, spend: Spend) -> list[int]:
    """What the call used on each counter of its reservation: tokens on the key's minute, its cost on each
    budget (in that budget's metric)."""
    amounts = []
    for name, _ in reservation.holds:
        metric = metric_of(name)
        amounts.append(used if metric is None else spend.micro(metric))
    return amounts


async def settle_tokens(
    reservation: quota.Reservation | None, used: int, spend: Spend = NOTHING, *, booked_at: float = 0
) -> None:
    """The call admitted with ``reservation`` used ``used`` tokens and cost ``spend`` (nothing: release it),
    as its usage record, created at ``booked_at`` (Unix seconds), books them. Once per reservation: a second
    settle, from any process, changes nothing."""
    if reservation is None:
        return
    try:
        _, spent = await quota.reconcile_spent(
            cache_redis.client(), reservation, _amounts(reservation, used, spend), booked_at=booked_at
        )
    except Exception:  # the hold lapses with its minute
        logger.warning("token limiter unavailable; the reservation lapses on its own", exc_info=True)
        return
    if len(reservation.holds) > 1:  # budgets: the reconcile said where each stands
        await thresholds_check([(name, s) for (name, _), s in zip(reservation.holds, spent, strict=True)])


# Settles sent by settle_tokens_soon and not yet answered (a task nobody references may be collected).
_settling: set[asyncio.Task[None]] = set()


def settle_tokens_soon(
    reservation: quota.Reservation | None, used: int, spend: Spend = NOTHING, *, booked_at: float = 0
) -> None:
    """``settle_tokens`` without waiting for Redis's answer, so that the response does not wait for it.

    For a server's requests only: a server's event loop outlives its requests, while a worker's task loop
    cancels what its task left running (there, await ``settle_tokens``). The settle leaves on the process's
    pipelined connection in the next turns of the loop, while the response is being sent.
    """
    if reservation is None:
        return
    task = asyncio.get_running_loop().create_task(settle_tokens(reservation, used, spend, booked_at=booked_at))
    _settling.add(task)
    task.add_done_callback(_settling.discard)


async def release_slot(slot: Slot | None) -> None:
    """Give back a parallel-request slot (once the call is booked). Idempotent."""
    if slot is None:
        return
    try:
        await cache_redis.client().script(_RELEASE_SLOT_LUA, [slot.name], [slot.id])
    except Exception:  # the slot lapses with its lease
        logger.warning("limiter unavailable; the parallel-request slot lapses on its own", exc_info=True)


def release_slot_soon(slot: Slot | None) -> None:
    """``release_slot`` without waiting for Redis's answer (a server's requests only: see ``settle_tokens_soon``)."""
    if slot is None:
        return
    task = asyncio.get_running_loop().create_task(release_slot(slot))
    _settling.add(task)
    task.add_done_callback(_settling.discard)


def settle_tokens_sync(
    reservation: quota.Reservation | None, used: int, spend: Spend = NOTHING, *, booked_at: float = 0
) -> None:
    """``settle_tokens`` for synchronous callers."""
    if reservation is None:
        return
    try:
        amounts = _amounts(reservation, used, spend)
        quota.reconcile_sync(cache_redis.sync_client(), reservation, amounts, booked_at=booked_at)
    except Exception:
        logger.warning("token limiter unavailable; the reservation lapses on its own", exc_info=True)


class OutboundBudgets:
    """Token buckets per model: a model with a spent budget is skipped like an open breaker."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def _run(self, model_pk: int, rpm: int | None, tpm: int | None, requests: int, tokens: int, force: bool) -> bool:
        keys = [f"budget:{model_pk}:requests", f"budget:{model_pk}:tokens"]
        args = [self.clock(), rpm or 0, requests, tpm or 0, tokens, int(force)]
        return bool(cache_redis.sync_script(_BUCKET_LUA)(keys=keys, args=args))

    async def _arun(
        self, model_pk: int, rpm: int | None, tpm: int | None, requests: int, tokens: int, force: bool
    ) -> bool:
        # The same raw keys as ``_run`` (the sync script is run on the cache's client, without key prefix).
        keys = [f"budget:{model_pk}:requests", f"budget:{model_pk}:tokens"]
        args = [self.clock(), rpm or 0, requests, tpm or 0, tokens, int(force)]
        return bool(await cache_redis.client().script(_BUCKET_LUA, keys, args))

    async def atake(self, model_pk: int, *, rpm: int | None, tpm: int | None, tokens: int) -> bool:
        """``take`` from the event loop."""
        if not rpm and not tpm:
            return True
        try:
            return await self._arun(model_pk, rpm, tpm, 1, tokens, False)
        except Exception:
            logger.warning("outbound budget unavailable; letting the request through", exc_info=True)
            return True

    async def acharge(self, model_pk: int, *, tpm: int | None, tokens: int) -> None:
        """``charge`` from the event loop."""
        if not tpm or tokens == 0:
            return
        try:
            await self._arun(model_pk, None, tpm, 0, tokens, True)
        except Exception:
            logger.warning("outbound budget unavailable", exc_info=True)

    def take(self, model_pk: int, *, rpm: int | None, tpm: int | None, tokens: int) -> bool:
        """Debit one request and ``tokens`` (the prompt plus ``max_tokens`` per choice, as providers count)
        when both buckets hold enough; ``False`` (and no debit) otherwise."""
        if not rpm and not tpm:
            return True
        try:
            return self._run(model_pk, rpm, tpm, 1, tokens, False)
        except Exception:
            logger.warning("outbound budget unavailable; letting the request through", exc_info=True)
            return True

    def charge(self, model_pk: int, *, tpm: int | None, tokens: int) -> None:
        """Settle the token bucket after the call, even past zero: ``take()`` reserved ``max_tokens`` per choice
        for the completion, so the gateway passes ``completion_tokens`` less that (negative: the unused part
        returns).
        """
        if not tpm or tokens == 0:
            return
        try:
            self._run(model_pk, None, tpm, 0, tokens, True)
        except Exception:
            logger.warning("outbound budget unavailable", exc_info=True)
