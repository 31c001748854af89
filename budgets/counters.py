"""What a budget has spent, as counters in Redis: their names, their units, and the over-budget error.

One counter per budget and period (and end user, for a user budget), a ``routing.quota`` counter: a hash
``{spent, reserved}`` that the gateway's admission reserves on and its booking reconciles, in the same Lua
step as the key's requests and tokens per minute. Amounts are integers in millionths of the budget's unit
(``MICRO``), rounded from each usage record's own figures exactly as ``budgets.ledger`` rounds them when it
rebuilds a counter from the ledger: the two must agree to the unit.

A counter also says how it was built (``budgets.ledger``): ``seeded`` (ms since the epoch) is when its spent
figure was read from the ledger; ``caught_up`` marks the second read that adds the rows other processes
still held in their buffers at that moment.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from spignosapi.errors import Reason, ServiceError
from spignosapi.fastpath.redis_client import cache_redis

from .models import MICRO, Budget
from .periods import period_bounds, period_label
from .selectors import BudgetInfo

_COUNTER = re.compile(r"budget:\d+:(usd|wh|co2e_g):")
_CENT_MILLIONTHS = Decimal("1e-8")  # the usage record's cost_usd: numeric(14, 8)


@dataclass(frozen=True, slots=True)
class Spend:
    """What one call cost, as its usage record books it."""

    cost_usd: float | Decimal = 0.0
    energy_wh: float = 0.0
    co2e_g: float = 0.0

    def micro(self, metric: str) -> int:
        if metric == Budget.Metric.USD:
            # As PostgreSQL stores the float in numeric(14, 8) (rounding half away from zero), then as
            # budgets.ledger sums it: floor(x * 1e6 + 0.5).
            stored = Decimal(repr(float(self.cost_usd))).quantize(_CENT_MILLIONTHS, rounding=ROUND_HALF_UP)
            return math.floor(stored * MICRO + Decimal("0.5"))
        value = self.energy_wh if metric == Budget.Metric.WH else self.co2e_g
        return math.floor(value * MICRO + 0.5)  # double arithmetic, as PostgreSQL's on the float column


NOTHING = Spend()


@dataclass(frozen=True, slots=True)
class Charge:
    """One budget a call is under, in the period of ``now``: its counter and when the period ends."""

    budget: BudgetInfo
    user_id: str  # the end user (user scope), "" otherwise
    start: datetime
    end: datetime | None  # None: never resets
    name: str  # the counter's Redis key

    @property
    def expires_at(self) -> int:
        """When the counter may go (Unix seconds; 0: never): a day after its period, for calls still running."""
        return 0 if self.end is None else int((self.end + timedelta(days=1)).timestamp())

    def retry_after(self, now: datetime) -> int | None:
        return None if self.end is None else max(math.ceil((self.end - now).total_seconds()), 1)


def charge_for(budget: BudgetInfo, *, user_id: str, now: datetime) -> Charge:
    start, end = period_bounds(budget.period, now)
    name = f"budget:{budget.id}:{budget.metric}:{period_label(budget.period, start)}"
    user = user_id if budget.scope == Budget.Scope.USER else ""
    if user:  # any string a client sends: hashed into a name of fixed size and alphabet
        name += ":u:" + hashlib.sha256(user.encode()).hexdigest()[:24]
    return Charge(budget, user, start, end, cache_redis.make_key(name))


def metric_of(counter_name: str) -> str | None:
    """The metric a budget counter counts; None for any other counter (a key's tokens per minute)."""
    found = _COUNTER.search(counter_name)
    return found.group(1) if found else None


def hold_seconds() -> float:
    """How long a budget's hold lasts when its call is never reconciled (its process was killed)."""
    return float(settings.BUDGET_HOLD_SECONDS)


def over_budget(
    charge: Charge, *, amount: int, now: datetime, error: type[ServiceError] = ServiceError
) -> ServiceError:
    """429 ``budget_exceeded``, naming the budget and when it resets (as ``error``: the gateway's own class)."""
    budget = charge.budget
    retry_after = charge.retry_after(now)
    resets = f"It resets at {charge.end.isoformat()}." if charge.end else "It does not reset."
    message = f"Budget exceeded: {budget.describe()} (budget {budget.id}) is spent. {resets}"
    if amount > budget.limit_micro:
        message += " This request alone may cost more than the whole budget: lower max_tokens or shorten the prompt."
    return error(
        message,
        reason=Reason.QUOTA_EXCEEDED,
        code="budget_exceeded",
        retry_after=retry_after,
        extra={
            "budget": {
                "id": budget.id,
                "scope": budget.scope,
                "metric": budget.metric,
                "period": budget.period,
                "limit": str(budget.limit.normalize()),
                "resets_at": charge.end.isoformat() if charge.end else None,
            }
        },
    )


def utc_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
