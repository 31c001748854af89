"""Budgets: the most a key, a team or an end user may spend (USD, Wh, gCO2e) per UTC day, week, month or in total.

A budget's definition lives here; what it has spent lives in Redis (``budgets.counters``), rebuilt from the
usage ledger when Redis lost it (``budgets.ledger``). Every process holds the definitions in memory
(``budgets.selectors.budget_table``): a change here is seen by every process within a snapshot check.

Scopes:

* ``key``: every call of ``api_key``;
* ``team``: every call of every key of ``team``, together;
* ``user``: the calls of one end user (the request's ``user`` / ``user_id`` / ``metadata.user_id``) within
  ``api_key`` or within ``team``. With ``user_id`` empty, the budget applies to each end user separately
  (each has their own spent figure); with a ``user_id``, to that end user only. A call that names no end
  user is under no user budget.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Q

# The smallest amount a budget counts: a millionth of its unit (micro-USD, µWh, µg CO2e).
MICRO = 1_000_000


class Budget(models.Model):
    class Scope(models.TextChoices):
        KEY = "key", "API key"
        TEAM = "team", "Team"
        USER = "user", "End user (within a key or a team)"

    class Metric(models.TextChoices):
        USD = "usd", "USD"
        WH = "wh", "Wh"
        CO2E_G = "co2e_g", "g CO2e"

    class Period(models.TextChoices):
        DAY = "day", "UTC day"
        WEEK = "week", "UTC week (from Monday)"
        MONTH = "month", "UTC calendar month"
        TOTAL = "total", "In total (never resets)"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    metric = models.CharField(max_length=8, choices=Metric.choices)
    period = models.CharField(max_length=8, choices=Period.choices)
    limit = models.DecimalField(
        max_digits=20,
        decimal_places=6,
        validators=[MinValueValidator(Decimal("0.000001"))],
        help_text="In the metric's unit (USD, Wh or g CO2e), to the millionth.",
    )
    soft_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.8"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("1"))],
        help_text="Fraction of the limit past which a budget.threshold webhook is sent (once per period).",
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets")
    user_id = models.CharField(
        max_length=200, blank=True, help_text="User scope only: that end user; empty: each end user separately."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                name="budget_owner_matches_scope",
                condition=(
                    Q(scope="key", api_key__isnull=False, team__isnull=True, user_id="")
                    | Q(scope="team", api_key__isnull=True, team__isnull=False, user_id="")
                    | Q(scope="user", api_key__isnull=False, team__isnull=True)
                    | Q(scope="user", api_key__isnull=True, team__isnull=False)
                ),
            ),
            models.CheckConstraint(name="budget_limit_positive", condition=Q(limit__gt=0)),
        ]

    def __str__(self) -> str:
        owner = f"key {self.api_key_id}" if self.api_key_id else f"team {self.team_id}"
        who = f" user {self.user_id or '*'}" if self.scope == self.Scope.USER else ""
        return f"{self.limit} {self.metric} per {self.period} ({owner}{who})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Hold the figures as their columns store them, so that every door (the API, the admin, createapikey)
        # logs and shows the same value: "50.000000" and "0.800", never "50" from one and "50.000000" from another.
        self.limit = _as_stored(self, "limit")
        self.soft_threshold = _as_stored(self, "soft_threshold")
        super().save(*args, **kwargs)
        _bump_on_commit()

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        deleted = super().delete(*args, **kwargs)
        _bump_on_commit()
        return deleted


def _as_stored(budget: Budget, name: str) -> Any:
    """``budget``'s decimal field ``name`` rounded as PostgreSQL rounds it into its column (half away from
    zero); left as it is when it is no number (the database refuses it, as before)."""
    field = budget._meta.get_field(name)
    value = getattr(budget, name)
    assert isinstance(field, models.DecimalField)
    try:
        number = field.to_python(value)
    except ValidationError:
        return value
    if number is None or not number.is_finite():
        return value
    return number.quantize(Decimal(1).scaleb(-field.decimal_places), rounding=ROUND_HALF_UP)


def _bump_on_commit() -> None:
    """This process reloads its budgets now; every other one once the change is committed."""
    from .selectors import budget_table

    budget_table.invalidate()
    transaction.on_commit(budget_table.bump)
