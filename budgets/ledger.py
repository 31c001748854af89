"""A budget counter's spent figure, rebuilt from the usage ledger: the ledger is the truth, Redis a cache of it.

A counter that Redis does not hold (a new period, or Redis restarted and lost it) is *seeded* before any call
reserves on it: at a watermark ``W`` (now, in ms), spent = the sum of the ledger's rows of the budget's scope
created in the period before ``W``. The admission's Lua step refuses to reserve on a counter not seeded, and
asks for it (``NEEDS_SYNC_LUA``); seeding is one ``HSETNX`` of the watermark, so two processes that rebuild
at once set it once: the second finds it set and adds nothing.

Why that counts every call once, whatever was in flight (the booking passes its row's ``created_at``, in ms,
to the reconcile; ``routing.quota``'s reconcile charges a hold it no longer finds when the reservation was
made before the counter's watermark and booked after it, once per reservation):

* a call booked before ``W`` has its row created before ``W``: it is in the ledger's sum, and its reconcile
  either happened in the Redis that was lost, or finds no seeded counter and adds nothing;
* a call reserved before ``W`` (on the lost counter) and booked after it: not in the sum (its row is later);
  its reconcile finds no hold and charges it, once (a marker per reservation);
* a call reserved after ``W``: its hold is on the new counter; its reconcile charges it as usual.

The rows of calls booked before ``W`` are not all in the table at ``W``: each process writes its rows in
batches (``ledger.buffer``, every ``USAGE_FLUSH_SECONDS``). So the counter is read from the ledger a second
time, ``BUDGET_LEDGER_CATCHUP_SECONDS`` after ``W`` (once those buffers were flushed): the same sum before
``W``, and the difference with the first is added once (``caught_up``, set with ``HSETNX`` too). A row
written later still (the database was down longer) is counted at the next rebuild only. The watermark and
``created_at`` are two processes' clocks: they must agree to the millisecond (one host, or NTP).

A call that ends in the next period is charged to the period it was reserved in (its counter), while its row
belongs to the next one: a rebuild puts it where its row is.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F, FloatField, Q, Sum, Value
from django.db.models.functions import Floor

from ledger.models import UsageRecord
from spignosapi.fastpath.redis_client import cache_redis

from .counters import Charge, utc_from_ms
from .models import MICRO, Budget

# Lua for the admission's step (``routing.limits``): is this counter ready to reserve on? 1: not seeded; 2:
# its catch-up is due (ARGV now, in seconds); 0: ready.
NEEDS_SYNC_LUA = """
local function budget_needs_sync(counter, now)
  local state = redis.call('HMGET', counter, 'seeded', 'caught_up', 'catchup_at')
  if not state[1] then return 1 end
  if not state[2] and tonumber(now) >= tonumber(state[3]) then return 2 end
  return 0
end
"""

# KEYS[1]: counter; ARGV: watermark (ms), spent before it, seconds to live (0: for ever), catch-up time (s).
_SEED_LUA = """
if redis.call('HSETNX', KEYS[1], 'seeded', ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
redis.call('HSET', KEYS[1], 'base', ARGV[2], 'catchup_at', ARGV[4])
if ARGV[3] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS[1]: counter; ARGV: the watermark it was read at, spent before it now. Only on the counter seeded at
# that watermark (not one seeded again since, after another restart).
_CATCH_UP_LUA = """
if redis.call('HGET', KEYS[1], 'seeded') ~= ARGV[1] then return 0 end
if redis.call('HSETNX', KEYS[1], 'caught_up', 1) == 0 then return 0 end
local base = tonumber(redis.call('HGET', KEYS[1], 'base') or '0')
redis.call('HINCRBY', KEYS[1], 'spent', tonumber(ARGV[2]) - base)
return 1
"""

_MICRO_DECIMAL = Value(Decimal(MICRO))
_HALF = Value(Decimal("0.5"))


def _micro_sum(metric: str) -> Any:
    """The sum of the rows' amounts in millionths, each rounded as ``budgets.counters.Spend.micro`` does."""
    if metric == Budget.Metric.USD:
        return Sum(Floor(F("cost_usd") * _MICRO_DECIMAL + _HALF))
    column = "energy_wh" if metric == Budget.Metric.WH else "co2e_g"
    return Sum(Floor(F(column) * Value(float(MICRO)) + Value(0.5), output_field=FloatField()))


def ledger_spent(charge: Charge, *, until: datetime) -> int:
    """What the ledger holds for ``charge``'s budget, period (and end user), from its start to ``until``."""
    budget = charge.budget
    scope = Q(api_key_id=budget.api_key_id) if budget.api_key_id is not None else Q(api_key__team_id=budget.team_id)
    if charge.user_id:
        scope &= Q(user_id=charge.user_id[:200])
    rows = UsageRecord.objects.filter(scope, created_at__gte=charge.start, created_at__lt=until)
    if charge.end is not None:
        rows = rows.filter(created_at__lt=charge.end)
    total = rows.aggregate(total=_micro_sum(budget.metric))["total"]
    return int(total or 0)


def counter_sync(charge: Charge, *, now: float) -> None:
    """Seed ``charge``'s counter from the ledger, or catch it up, if it needs it (see the module's docstring)."""
    client = cache_redis.sync_client()
    seeded, caught_up, catch_up_due = client.hmget(charge.name, "seeded", "caught_up", "catchup_at")
    if seeded is None:
        watermark = int(now * 1000)
        spent = ledger_spent(charge, until=utc_from_ms(watermark))
        ttl = max(int(charge.expires_at - now), 1) if charge.expires_at else 0
        catch_up_at = now + float(settings.BUDGET_LEDGER_CATCHUP_SECONDS)
        client.eval(_SEED_LUA, 1, charge.name, watermark, spent, ttl, repr(catch_up_at))
    elif caught_up is None and now >= float(catch_up_due or 0):
        spent = ledger_spent(charge, until=utc_from_ms(int(seeded)))
        client.eval(_CATCH_UP_LUA, 1, charge.name, int(seeded), spent)
