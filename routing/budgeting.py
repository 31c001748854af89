"""The gateway's side of the budgets (``budgets``): what a call may cost against each budget it is under, and
what each budget in force has spent.

Admission reserves, on each budget in force (the key's, its team's, the end user's), the most the call can
cost: its prompt and ``max_tokens`` for each of its choices, accounted (``ledger.accounting.account``: the
prices, energy coefficient and grid intensity the usage record will use) at the most expensive model its
route may reach: the chain of a route already chosen, the one a request names (a model, an alias, a
category), else every chain of every category. The booking reconciles it with what the usage record books
(``routing.limits.settle_tokens``). No I/O here: the budgets and the models come from in-memory snapshots.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from accounts.selectors import KeyInfo
from budgets.counters import Charge, Spend, charge_for
from budgets.ledger import counter_sync
from budgets.selectors import BudgetInfo, BudgetTable, budget_table, budgets_for
from ledger.accounting import account
from spignosapi.fastpath.redis_client import cache_redis

from . import quota
from .errors import GatewayError
from .limits import BudgetCost
from .router import Route, explicit_route
from .selectors import ModelInfo, RoutingConfig


def reachable_models(
    config: RoutingConfig, *, model: str | None, category: str | None, route: Route | None
) -> list[ModelInfo]:
    """Every model the call may end on: its route's chain, the one it names, else every category's."""
    chain: Iterable[str]
    if route is not None:
        chain = route.chain
    else:
        try:
            named = explicit_route(config, model=model, category=category)
        except GatewayError:  # raised again by the routing, after the limits
            named = None
        chain = named.chain if named is not None else (m for c in config.categories.values() for m in c.chain)
    return [config.models[m] for m in dict.fromkeys(chain) if m in config.models]


def budget_costs(
    table: BudgetTable,
    key: KeyInfo,
    *,
    user_id: str,
    models: Iterable[ModelInfo],
    prompt_tokens: int,
    completion_tokens: int,
) -> list[BudgetCost]:
    """Each budget ``key``'s call (for ``user_id``) is under, with the most it can cost on ``models``."""
    budgets = budgets_for(table, key_id=key.id, team_id=key.team_id, user_id=user_id)
    if not budgets:
        return []
    costs = [account(info, prompt_tokens, completion_tokens) for info in models]
    spends = [Spend(cost.cost_usd, cost.energy_wh, cost.co2e_g) for cost in costs] or [Spend()]
    worst = {metric: max(spend.micro(metric) for spend in spends) for metric in {b.metric for b in budgets}}
    return [BudgetCost(budget, user_id[:200], worst[budget.metric]) for budget in budgets]


def spend_of(meta: dict[str, Any]) -> Spend:
    """What a call cost, from the meta its usage record is made of."""
    return Spend(meta["cost_usd"], meta["energy_wh"], meta["co2e_g"])


def _report(charge: Charge, spent: int, reserved: int) -> dict[str, Any]:
    budget = charge.budget
    limit = budget.limit_micro
    return {
        "id": budget.id,
        "scope": budget.scope,
        "metric": budget.metric,
        "period": budget.period,
        "limit": float(budget.limit),
        "spent": spent / 1_000_000,
        "reserved": reserved / 1_000_000,
        "remaining": max(limit - spent - reserved, 0) / 1_000_000,
        "resets_at": charge.end.isoformat() if charge.end else None,
    }


def budgets_in_force(key: KeyInfo, *, user_id: str = "", now: float | None = None) -> list[dict[str, Any]]:
    """``GET /api/v1/keys/me``'s ``budgets``: each budget ``key`` (for ``user_id``) is under, in the current
    period: ``{"id", "scope", "metric", "period", "limit", "spent", "reserved", "remaining", "resets_at"}``.

    Synchronous (a view's thread): a counter Redis does not hold is rebuilt from the ledger first.
    """
    moment = time.time() if now is None else now
    when = datetime.fromtimestamp(moment, UTC)
    budgets = budgets_for(budget_table.get(), key_id=key.id, team_id=key.team_id, user_id=user_id)
    charges = [charge_for(budget, user_id=user_id, now=when) for budget in budgets]
    for charge in charges:
        counter_sync(charge, now=moment)
    states = quota.state_sync(cache_redis.sync_client(), [c.name for c in charges], now=moment) if charges else []
    return [_report(charge, spent, reserved) for charge, (spent, reserved) in zip(charges, states, strict=True)]


def budget_current(budget: BudgetInfo, *, now: float | None = None) -> dict[str, Any] | None:
    """What ``budget`` has spent and holds in its current period (rebuilt from the ledger first if need be);
    None for a user budget that applies to each end user separately (one figure per end user)."""
    if budget.scope == "user" and not budget.user_id:
        return None
    moment = time.time() if now is None else now
    charge = charge_for(budget, user_id=budget.user_id, now=datetime.fromtimestamp(moment, UTC))
    counter_sync(charge, now=moment)
    [(spent, reserved)] = quota.state_sync(cache_redis.sync_client(), [charge.name], now=moment)
    return _report(charge, spent, reserved)
