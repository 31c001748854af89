"""The staff API's input: a budget as a client writes it (a key by its prefix, a team by its name)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from .models import Budget


class _StrictDecimal(serializers.DecimalField):
    """A number or a numeric string; booleans (which DRF would take as 1 and 0) are refused."""

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, (int, float, str)):
            self.fail("invalid")
        value: Decimal = super().to_internal_value(data)
        return value


def _limit() -> _StrictDecimal:
    return _StrictDecimal(
        max_digits=20, decimal_places=6, min_value=Decimal("0.000001"), help_text="In the metric's unit, > 0."
    )


def _threshold() -> _StrictDecimal:
    return _StrictDecimal(
        max_digits=4,
        decimal_places=3,
        min_value=Decimal("0.001"),
        max_value=Decimal("1"),
        help_text="Fraction of the limit past which budget.threshold is sent (default 0.8).",
    )


class BudgetInput(serializers.Serializer[Any]):
    scope = serializers.ChoiceField(choices=Budget.Scope.choices)
    metric = serializers.ChoiceField(choices=Budget.Metric.choices)
    period = serializers.ChoiceField(choices=Budget.Period.choices)
    limit = _limit()
    soft_threshold = _threshold()
    key = serializers.CharField(required=False, max_length=100, help_text="The key's prefix (key or user scope).")
    team = serializers.CharField(required=False, max_length=100, help_text="The team's name (team or user scope).")
    user_id = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="User scope: one end user; empty: each one."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["soft_threshold"].required = False

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        scope, key, team = attrs["scope"], attrs.get("key"), attrs.get("team")
        if scope == Budget.Scope.KEY and (key is None or team is not None):
            raise serializers.ValidationError({"key": "A key budget names its key (its prefix), and no team."})
        if scope == Budget.Scope.TEAM and (team is None or key is not None):
            raise serializers.ValidationError({"team": "A team budget names its team, and no key."})
        if scope == Budget.Scope.USER and (key is None) == (team is None):
            raise serializers.ValidationError({"key": "A user budget names either a key or a team."})
        if scope != Budget.Scope.USER and attrs.get("user_id"):
            raise serializers.ValidationError({"user_id": "Only a user budget names an end user."})
        return attrs


class BudgetUpdate(serializers.Serializer[Any]):
    limit = _limit()
    soft_threshold = _threshold()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False
