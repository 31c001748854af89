"""A budget's soft threshold: crossing it sends one ``budget.threshold`` webhook per period (and end user).

Checked after each call that was under a budget is settled, on the spent figures the reconcile answered:
for the counters past their threshold, one Lua step sets a marker beside each (``<counter>:alerted``, living
as long as the counter) with ``SET NX``: of every process that sees the crossing, one sends the webhook.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async

from spignosapi import webhooks
from spignosapi.fastpath.redis_client import cache_redis

from .models import MICRO
from .selectors import BudgetInfo, budget_table

logger = logging.getLogger(__name__)
EVENT = "budget.threshold"
_BUDGET_ID = re.compile(r"budget:(\d+):")

# KEYS: counters; ARGV: each one's threshold (millionths). Returns {position, spent} of the counters crossed
# now (the first to see it).
_CROSSED_LUA = """
local out = {}
for i = 1, #KEYS do
  local spent = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
  if spent >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', KEYS[i])
    local marker = KEYS[i] .. ':alerted'
    local set
    if ttl > 0 then
      set = redis.call('SET', marker, 1, 'NX', 'PX', ttl)
    else
      set = redis.call('SET', marker, 1, 'NX')
    end
    if set then out[#out + 1] = i; out[#out + 1] = spent end
  end
end
return out
"""


def _budget_of(name: str) -> BudgetInfo | None:
    found = _BUDGET_ID.search(name)
    return budget_table.get().by_id.get(int(found.group(1))) if found else None


def threshold_of(budget: BudgetInfo) -> int:
    return int(budget.limit * budget.soft_threshold * MICRO)


# Counters this process saw past their threshold (and alerted, or found alerted): not asked about again. Only
# a shortcut: the marker in Redis is what makes the webhook one per period.
_past: set[str] = set()


async def thresholds_check(counters: Sequence[tuple[str, int]]) -> None:
    """Send ``budget.threshold`` for each budget counter (name, spent figure just after a call was settled on
    it) past its soft threshold, once per counter: its period. Other counters (a key's tokens) are ignored. One
    Redis step only when a counter is past its threshold. Never raises: an alert lost must not fail a call."""
    try:
        watched = [
            (name, budget)
            for name, spent in counters
            if name not in _past and (budget := _budget_of(name)) is not None and spent >= threshold_of(budget)
        ]
        if not watched:
            return
        names = [name for name, _ in watched]
        _past.update(names)
        if len(_past) > 100_000:  # periods go by: forget the old ones rather than grow for ever
            _past.clear()
        reply = await cache_redis.client().script(_CROSSED_LUA, names, [threshold_of(b) for _, b in watched])
        for position, spent in zip(reply[::2], reply[1::2], strict=True):
            name, budget = watched[int(position) - 1]
            await sync_to_async(webhooks.notify, thread_sensitive=False)(EVENT, _payload(budget, name, int(spent)))
    except Exception:
        logger.warning("budget thresholds not checked", exc_info=True)


def _payload(budget: BudgetInfo, counter: str, spent: int) -> dict[str, Any]:
    return {
        "budget": {
            "id": budget.id,
            "scope": budget.scope,
            "metric": budget.metric,
            "period": budget.period,
            "limit": str(budget.limit.normalize()),
            "soft_threshold": str(budget.soft_threshold.normalize()),
            "api_key_id": budget.api_key_id,
            "team_id": budget.team_id,
        },
        "spent": spent / MICRO,
        "fraction": round(spent / budget.limit_micro, 6),
        "period_counter": counter.rpartition("budget:")[2],
    }
