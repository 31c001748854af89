"""Writes for budgets: create, change, delete (every process sees the change within a snapshot check)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from accounts.models import ApiKey, Team
from spignosapi.errors import Reason, ServiceError

from .models import Budget


def _owner(*, key: str | None, team: str | None) -> dict[str, Any]:
    """The key (by prefix) or team (by name) a budget belongs to; 400 naming the param when there is none."""
    if key is not None:
        found = ApiKey.objects.filter(prefix=key).first()
        if found is None:
            raise ServiceError(f"There is no API key {key!r}.", reason=Reason.INVALID, code="unknown_key", param="key")
        return {"api_key": found}
    found_team = Team.objects.filter(name=team).first()
    if found_team is None:
        raise ServiceError(f"There is no team {team!r}.", reason=Reason.INVALID, code="unknown_team", param="team")
    return {"team": found_team}


def budget_create(
    *,
    scope: str,
    metric: str,
    period: str,
    limit: Decimal,
    soft_threshold: Decimal = Decimal("0.8"),
    key: str | None = None,
    team: str | None = None,
    user_id: str = "",
) -> Budget:
    budget = Budget(
        scope=scope,
        metric=metric,
        period=period,
        limit=limit,
        soft_threshold=soft_threshold,
        user_id=user_id,
        **_owner(key=key, team=team),
    )
    budget.save()
    return budget


def budget_update(*, budget: Budget, limit: Decimal | None = None, soft_threshold: Decimal | None = None) -> Budget:
    """A new limit or threshold applies from the next call on; what the period spent stays."""
    if limit is not None:
        budget.limit = limit
    if soft_threshold is not None:
        budget.soft_threshold = soft_threshold
    budget.save(update_fields=["limit", "soft_threshold"])
    return budget


def budget_delete(*, budget: Budget) -> None:
    budget.delete()
