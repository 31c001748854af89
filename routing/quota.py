"""Quotas: counters in Redis that a call reserves before it runs and reconciles after, atomically.

The one primitive behind every "at most N per period" that must hold under concurrency, shared by every
process and host: a key's tokens per minute today, the budgets (USD, Wh, gCO2e per key, team, end user)
next. Counting only after the call lets a burst through (40 requests admitted at once, each charged when
it ends); reserving the most a call can use, then correcting to what it used, never does.

A counter is a Redis hash ``{spent, reserved}`` at ``Counter.name`` and a sorted set of the holds on it at
``<name>:holds`` (member ``<amount>:<reservation id>``, scored by the time the hold lapses). Both expire at
``Counter.expires_at``, after the end of the counter's window or period: periods roll over by themselves,
as the period is part of the name.

* ``reserve`` (one Lua step, all or nothing): for each counter, refuse when ``spent + reserved + amount``
  would pass its limit; else add ``amount`` to ``reserved`` and record the hold.
* ``reconcile`` (one Lua step): for each counter whose hold is still there, remove it, take its amount out
  of ``reserved`` and add the amount really used to ``spent`` (never refused: the call is over). The hold's
  removal is the "exactly once": a second reconcile of the same reservation, from any process, changes
  nothing. Releasing a reservation is reconciling it with zero.
* A hold never reconciled (its process was killed) lapses at its ``hold_until``: the next reserve on that
  counter takes it out of ``reserved``, so it does not hold capacity for ever.

For a second user (the budgets): give ``limits``'s admission more counters (its script reserves any number
in the same round trip), one per budget in force with the most the call can cost, and settle each with
what the call cost. Not built yet: rebuilding ``spent`` from the ledger after a Redis restart (a counter
that does not exist reads as zero here).

Amounts are integers (tokens; a budget counts micro-units). This module runs its scripts on the client it
is given (``spignosapi.fastpath.redis_client`` holds the process's Redis clients): anything with ``async
script(source, keys, args)``, or, for the synchronous versions, a redis-py client.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Lua shared by the scripts below and by callers that reserve within a larger step (routing.limits admits
# a key's requests/minute and its counters in one round trip): ``quota_reserve(k, a)`` reads its counters'
# keys from KEYS[k] on (counter, holds, counter, holds, ...) and its arguments from ARGV[a] on: now,
# reservation id, hold until, number of counters, then (amount, limit, seconds left to live or 0) per counter.
# Returns 0 when reserved, else the position (from 1) of the first counter it would take past its limit.
RESERVE_LUA = """
local function quota_lapse(counter, holds, now)
  local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #lapsed == 0 then return end
  local freed = 0
  for _, hold in ipairs(lapsed) do freed = freed + tonumber(string.match(hold, '^%d+')) end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  redis.call('HINCRBY', counter, 'reserved', -freed)
end

local function quota_reserve(k, a)
  local now, id, hold_until, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  for i = 0, n - 1 do
    local counter = KEYS[k + 2 * i]
    quota_lapse(counter, KEYS[k + 2 * i + 1], now)
    local state = redis.call('HMGET', counter, 'spent', 'reserved')
    local used = (tonumber(state[1]) or 0) + (tonumber(state[2]) or 0)
    if used + tonumber(ARGV[a + 4 + 3 * i]) > tonumber(ARGV[a + 5 + 3 * i]) then return i + 1 end
  end
  for i = 0, n - 1 do
    local counter, holds = KEYS[k + 2 * i], KEYS[k + 2 * i + 1]
    local amount, ttl = ARGV[a + 4 + 3 * i], ARGV[a + 6 + 3 * i]
    redis.call('HINCRBY', counter, 'reserved', amount)
    redis.call('ZADD', holds, hold_until, amount .. ':' .. id)
    if ttl ~= '0' then
      redis.call('EXPIRE', counter, ttl)
      redis.call('EXPIRE', holds, ttl)
    end
  end
  return 0
end
"""

_RESERVE_ONLY_LUA = RESERVE_LUA + "return quota_reserve(1, 1)\n"

# KEYS: (counter, holds) per counter; ARGV: reservation id, then (amount reserved, amount used) per counter.
# Returns how many holds it settled (0: already reconciled, or lapsed).
_RECONCILE_LUA = """
local settled = 0
for i = 0, #KEYS / 2 - 1 do
  local counter, reserved = KEYS[1 + 2 * i], ARGV[2 + 2 * i]
  if redis.call('ZREM', KEYS[2 + 2 * i], reserved .. ':' .. ARGV[1]) == 1 then
    redis.call('HINCRBY', counter, 'reserved', -tonumber(reserved))
    local used = tonumber(ARGV[3 + 2 * i])
    if used ~= 0 then redis.call('HINCRBY', counter, 'spent', used) end
    settled = settled + 1
  end
end
return settled
"""

# KEYS: (counter, holds) per counter; ARGV: now. Each counter's {spent, reserved}, lapsed holds taken out.
_STATE_LUA = (
    RESERVE_LUA
    + """
local out = {}
for i = 1, #KEYS, 2 do
  quota_lapse(KEYS[i], KEYS[i + 1], ARGV[1])
  local state = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
  out[#out + 1] = {tonumber(state[1]) or 0, tonumber(state[2]) or 0}
end
return out
"""
)


class ScriptClient(Protocol):
    async def script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...


@dataclass(frozen=True, slots=True)
class Counter:
    """What to reserve on one counter: ``amount`` (the most the call can use), refused past ``limit``.

    ``name`` is the counter's Redis key (prefixed as the caller's keys are); it and its holds expire at
    ``expires_at`` (Unix seconds; 0: never).
    """

    name: str
    amount: int
    limit: int
    expires_at: int = 0


@dataclass(frozen=True, slots=True)
class Reservation:
    """The handle of a reservation: what ``reconcile`` needs, from any process (``as_dict`` travels in JSON)."""

    id: str
    holds: tuple[tuple[str, int], ...]  # (counter name, amount reserved)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "holds": [list(hold) for hold in self.holds]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reservation:
        return cls(str(data["id"]), tuple((str(name), int(amount)) for name, amount in data["holds"]))


@dataclass(frozen=True, slots=True)
class Reserve:
    """One reservation as a script's keys and arguments (for ``RESERVE_LUA``), and its handle once granted."""

    keys: list[str]
    args: list[Any]
    reservation: Reservation


def holds_key(name: str) -> str:
    return f"{name}:holds"


def plan(counters: Sequence[Counter], *, now: float, hold_until: float) -> Reserve:
    """The keys and arguments of reserving ``counters``; a hold not reconciled lapses at ``hold_until``."""
    keys: list[str] = []
    args: list[Any] = [repr(now), os.urandom(8).hex(), repr(hold_until), len(counters)]
    for counter in counters:
        if counter.amount < 0:
            raise ValueError(f"cannot reserve a negative amount on {counter.name}")
        keys += [counter.name, holds_key(counter.name)]
        # Relative to ``now``, the caller's clock (Redis's may differ, and tests inject one).
        ttl = max(math.ceil(counter.expires_at - now), 1) if counter.expires_at else 0
        args += [counter.amount, counter.limit, ttl]
    return Reserve(keys, args, Reservation(args[1], tuple((c.name, c.amount) for c in counters)))


def _reconcile_inputs(reservation: Reservation, used: Sequence[int]) -> tuple[list[str], list[Any]]:
    if len(used) != len(reservation.holds):
        raise ValueError(f"{len(reservation.holds)} counters reserved, {len(used)} amounts used")
    keys: list[str] = []
    args: list[Any] = [reservation.id]
    for (name, reserved), amount in zip(reservation.holds, used, strict=True):
        keys += [name, holds_key(name)]
        args += [reserved, amount]
    return keys, args


async def reserve(
    client: ScriptClient, counters: Sequence[Counter], *, now: float, hold_until: float
) -> Reservation | Counter:
    """Reserve on every counter or none: the ``Reservation``, or the ``Counter`` that would go over."""
    step = plan(counters, now=now, hold_until=hold_until)
    over = int(await client.script(_RESERVE_ONLY_LUA, step.keys, step.args))
    return counters[over - 1] if over else step.reservation


async def reconcile(client: ScriptClient, reservation: Reservation, used: Sequence[int]) -> int:
    """Turn the reservation into ``used`` (per counter, in order); 0 when it was already settled or lapsed."""
    keys, args = _reconcile_inputs(reservation, used)
    return int(await client.script(_RECONCILE_LUA, keys, args))


async def state(client: ScriptClient, names: Sequence[str], *, now: float) -> list[tuple[int, int]]:
    """(spent, reserved) of each counter now (holds lapsed by ``now`` no longer count)."""
    keys = [key for name in names for key in (name, holds_key(name))]
    return [(int(s), int(r)) for s, r in await client.script(_STATE_LUA, keys, [repr(now)])]


# --- the same on a synchronous redis-py client ---------------------------------------------------------


def reconcile_sync(client: Any, reservation: Reservation, used: Sequence[int]) -> int:
    keys, args = _reconcile_inputs(reservation, used)
    return int(client.eval(_RECONCILE_LUA, len(keys), *keys, *args))


def state_sync(client: Any, names: Sequence[str], *, now: float) -> list[tuple[int, int]]:
    keys = [key for name in names for key in (name, holds_key(name))]
    return [(int(s), int(r)) for s, r in client.eval(_STATE_LUA, len(keys), *keys, repr(now))]
