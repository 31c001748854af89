"""Reads for budgets: every budget, held in memory per process (``spignosapi.snapshots``), so that finding the
budgets a call is under costs no query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from spignosapi.snapshots import Snapshot

from .models import MICRO, Budget


@dataclass(frozen=True, slots=True)
class BudgetInfo:
    id: int
    scope: str
    metric: str
    period: str
    limit: Decimal
    soft_threshold: Decimal
    api_key_id: int | None
    team_id: int | None
    user_id: str  # user scope: "" for each end user separately

    @property
    def limit_micro(self) -> int:
        return int(self.limit * MICRO)

    def describe(self) -> str:
        """How a message names it: "the key's budget of 5 USD per day"."""
        owner = "key's" if self.api_key_id is not None else "team's"
        who = "end user's" if self.scope == Budget.Scope.USER else owner
        per = "in total" if self.period == Budget.Period.TOTAL else f"per {self.period}"
        return f"the {who} budget of {self.limit.normalize():f} {UNITS[self.metric]} {per}"


UNITS: dict[str, str] = {Budget.Metric.USD: "USD", Budget.Metric.WH: "Wh", Budget.Metric.CO2E_G: "gCO2e"}


@dataclass(frozen=True, slots=True)
class BudgetTable:
    """Every budget, by the key and by the team it belongs to (user budgets included)."""

    by_key: dict[int, tuple[BudgetInfo, ...]] = field(default_factory=dict)
    by_team: dict[int, tuple[BudgetInfo, ...]] = field(default_factory=dict)
    by_id: dict[int, BudgetInfo] = field(default_factory=dict)


def budget_info(budget: Budget) -> BudgetInfo:
    return BudgetInfo(
        budget.pk,
        budget.scope,
        budget.metric,
        budget.period,
        budget.limit,
        budget.soft_threshold,
        budget.api_key_id,
        budget.team_id,
        budget.user_id,
    )


def _load_budgets() -> BudgetTable:
    by_key: dict[int, list[BudgetInfo]] = {}
    by_team: dict[int, list[BudgetInfo]] = {}
    for budget in Budget.objects.order_by("id"):
        info = budget_info(budget)
        if info.api_key_id is not None:
            by_key.setdefault(info.api_key_id, []).append(info)
        elif info.team_id is not None:
            by_team.setdefault(info.team_id, []).append(info)
    return BudgetTable(
        {k: tuple(v) for k, v in by_key.items()},
        {t: tuple(v) for t, v in by_team.items()},
        {b.id: b for group in (*by_key.values(), *by_team.values()) for b in group},
    )


budget_table: Snapshot[BudgetTable] = Snapshot("budgets", _load_budgets)


def budgets_for(table: BudgetTable, *, key_id: int, team_id: int | None, user_id: str) -> list[BudgetInfo]:
    """The budgets a call of key ``key_id`` (of team ``team_id``) for end user ``user_id`` is under: the key's,
    its team's, and the end user's within either. No I/O: ``table`` is the loaded snapshot."""
    candidates: Sequence[BudgetInfo] = table.by_key.get(key_id, ())
    if team_id is not None:
        candidates = (*candidates, *table.by_team.get(team_id, ()))
    return [budget for budget in candidates if applies(budget, user_id)]


def applies(budget: BudgetInfo, user_id: str) -> bool:
    if budget.scope != Budget.Scope.USER:
        return True
    return bool(user_id) and budget.user_id in ("", user_id)
