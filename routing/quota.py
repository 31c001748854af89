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

* A hold that lapsed is remembered (``<name>:holds:lapsed``) until its counter expires: reconciling it
  later still charges what the call used (once), so a call that outlived its hold is not lost.
* A counter rebuilt from a ledger (``budgets.ledger``) carries the time it was rebuilt at (``seeded``, ms): a
  hold made before that was lost with the old counter, and its reconcile charges it when the call was booked
  at or after that time (``booked_at``), once (a marker per reservation); a call booked before it is in the
  ledger's figure already. Reservation ids start with the time they were made (ms) for that.

The budgets are the second user: ``limits``'s admission reserves on the key's tokens/minute and on one
counter per budget in force (the most the call can cost) in the same round trip, and the booking settles
each with what the call cost.

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
# reservation id, hold until, number of counters, then (amount, limit, seconds left to live or 0, hold until or
# 0 for the reservation's) per counter.
# Returns 0 when reserved, else the position (from 1) of the first counter it would take past its limit.
RESERVE_LUA = """
local function quota_lapse(counter, holds, now)
  local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #lapsed == 0 then return end
  local freed = 0
  for _, hold in ipairs(lapsed) do freed = freed + tonumber(string.match(hold, '^%d+')) end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  redis.call('HINCRBY', counter, 'reserved', -freed)
  -- remembered, so that a late reconcile still charges the call (as long as the holds live)
  redis.call('SADD', holds .. ':lapsed', unpack(lapsed))
  local ttl = redis.call('PTTL', holds)
  if ttl > 0 then redis.call('PEXPIRE', holds .. ':lapsed', ttl) end
end

local function quota_reserve(k, a)
  local now, id, hold_until, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  for i = 0, n - 1 do
    local counter = KEYS[k + 2 * i]
    quota_lapse(counter, KEYS[k + 2 * i + 1], now)
    local state = redis.call('HMGET', counter, 'spent', 'reserved')
    local used = (tonumber(state[1]) or 0) + (tonumber(state[2]) or 0)
    if used + tonumber(ARGV[a + 4 + 4 * i]) > tonumber(ARGV[a + 5 + 4 * i]) then return i + 1 end
  end
  for i = 0, n - 1 do
    local counter, holds = KEYS[k + 2 * i], KEYS[k + 2 * i + 1]
    local amount, ttl, lapse_at = ARGV[a + 4 + 4 * i], ARGV[a + 6 + 4 * i], ARGV[a + 7 + 4 * i]
    if lapse_at == '0' then lapse_at = hold_until end
    redis.call('HINCRBY', counter, 'reserved', amount)
    redis.call('ZADD', holds, lapse_at, amount .. ':' .. id)
    if ttl ~= '0' then
      redis.call('EXPIRE', counter, ttl)
      redis.call('EXPIRE', holds, ttl)
    end
  end
  return 0
end
"""

_RESERVE_ONLY_LUA = RESERVE_LUA + "return quota_reserve(1, 1)\n"

# KEYS: (counter, holds) per counter; ARGV: reservation id, booked at (ms; 0: unknown), then (amount reserved,
# amount used) per counter. Returns how many holds it settled (0: already reconciled, or lost), then each
# counter's spent figure after it.
_RECONCILE_LUA = """
local id, booked = ARGV[1], tonumber(ARGV[2])
local made = tonumber(string.match(id, '^(%d+)%.'))
local settled = 0
local out = {0}
for i = 0, #KEYS / 2 - 1 do
  local counter, holds, reserved = KEYS[1 + 2 * i], KEYS[2 + 2 * i], ARGV[3 + 2 * i]
  local hold = reserved .. ':' .. id
  local charge = false
  if redis.call('ZREM', holds, hold) == 1 then
    redis.call('HINCRBY', counter, 'reserved', -tonumber(reserved))
    charge = true
  elseif redis.call('SREM', holds .. ':lapsed', hold) == 1 then
    charge = true
  elseif made and booked > 0 then
    -- the hold was lost with a counter since rebuilt from the ledger, which does not count this call
    local seeded = tonumber(redis.call('HGET', counter, 'seeded'))
    if seeded and made < seeded and booked >= seeded then
      local ttl = redis.call('PTTL', counter)
      if ttl < 0 then ttl = 86400000 end
      charge = redis.call('SET', counter .. ':late:' .. id, 1, 'NX', 'PX', ttl) ~= false
    end
  end
  if charge then
    local used = tonumber(ARGV[4 + 2 * i])
    if used ~= 0 then redis.call('HINCRBY', counter, 'spent', used) end
    settled = settled + 1
  end
  out[#out + 1] = tonumber(redis.call('HGET', counter, 'spent') or '0')
end
out[1] = settled
return out
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
    ``expires_at`` (Unix seconds; 0: never). Its hold lapses at ``hold_until`` (0: the reservation's).
    """

    name: str
    amount: int
    limit: int
    expires_at: int = 0
    hold_until: float = 0


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
    # The id starts with when it was made (ms): a reconcile tells by it a hold lost with a rebuilt counter.
    args: list[Any] = [repr(now), f"{int(now * 1000)}.{os.urandom(8).hex()}", repr(hold_until), len(counters)]
    for counter in counters:
        if counter.amount < 0:
            raise ValueError(f"cannot reserve a negative amount on {counter.name}")
        keys += [counter.name, holds_key(counter.name)]
        # Relative to ``now``, the caller's clock (Redis's may differ, and tests inject one).
        ttl = max(math.ceil(counter.expires_at - now), 1) if counter.expires_at else 0
        args += [counter.amount, counter.limit, ttl, repr(counter.hold_until) if counter.hold_until else 0]
    return Reserve(keys, args, Reservation(args[1], tuple((c.name, c.amount) for c in counters)))


def _reconcile_inputs(reservation: Reservation, used: Sequence[int], booked_at: float) -> tuple[list[str], list[Any]]:
    if len(used) != len(reservation.holds):
        raise ValueError(f"{len(reservation.holds)} counters reserved, {len(used)} amounts used")
    keys: list[str] = []
    args: list[Any] = [reservation.id, int(booked_at * 1000)]
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


async def reconcile(
    client: ScriptClient, reservation: Reservation, used: Sequence[int], *, booked_at: float = 0
) -> int:
    """Turn the reservation into ``used`` (per counter, in order); 0 when it was already settled (or lost).

    ``booked_at`` (Unix seconds; 0: unknown) is when the call's usage record was created: see the module's
    docstring for what it decides."""
    return (await reconcile_spent(client, reservation, used, booked_at=booked_at))[0]


async def reconcile_spent(
    client: ScriptClient, reservation: Reservation, used: Sequence[int], *, booked_at: float = 0
) -> tuple[int, list[int]]:
    """``reconcile``, and each counter's spent figure after it (in the reservation's order)."""
    keys, args = _reconcile_inputs(reservation, used, booked_at)
    reply = await client.script(_RECONCILE_LUA, keys, args)
    return int(reply[0]), [int(spent) for spent in reply[1:]]


async def state(client: ScriptClient, names: Sequence[str], *, now: float) -> list[tuple[int, int]]:
    """(spent, reserved) of each counter now (holds lapsed by ``now`` no longer count)."""
    keys = [key for name in names for key in (name, holds_key(name))]
    return [(int(s), int(r)) for s, r in await client.script(_STATE_LUA, keys, [repr(now)])]


# --- the same on a synchronous redis-py client ---------------------------------------------------------


def reconcile_sync(client: Any, reservation: Reservation, used: Sequence[int], *, booked_at: float = 0) -> int:
    keys, args = _reconcile_inputs(reservation, used, booked_at)
    return int(client.eval(_RECONCILE_LUA, len(keys), *keys, *args)[0])


def state_sync(client: Any, names: Sequence[str], *, now: float) -> list[tuple[int, int]]:
    keys = [key for name in names for key in (name, holds_key(name))]
    return [(int(s), int(r)) for s, r in client.eval(_STATE_LUA, len(keys), *keys, repr(now))]
