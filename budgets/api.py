"""Staff endpoints: ``GET/POST /api/v1/budgets``, ``PATCH/DELETE /api/v1/budgets/<id>``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsStaff
from routing.budgeting import budget_current
from spignosapi.api.errors import NotFound

from . import services
from .models import Budget
from .selectors import budget_info
from .serializers import BudgetInput, BudgetUpdate

_BUDGET_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "id": serializers.IntegerField(),
    "scope": serializers.ChoiceField(choices=Budget.Scope.choices),
    "metric": serializers.ChoiceField(choices=Budget.Metric.choices),
    "period": serializers.ChoiceField(choices=Budget.Period.choices),
    "limit": serializers.FloatField(),
    "soft_threshold": serializers.FloatField(),
    "key": serializers.CharField(allow_null=True, help_text="The key's prefix"),
    "team": serializers.CharField(allow_null=True),
    "user_id": serializers.CharField(),
    "created_at": serializers.DateTimeField(),
}
BudgetOutput = inline_serializer("Budget", _BUDGET_FIELDS)


_CURRENT = ("spent", "reserved", "remaining", "resets_at")


def budget_payload(budget: Budget) -> dict[str, Any]:
    current = budget_current(budget_info(budget))
    return {
        "id": budget.pk,
        "scope": budget.scope,
        "metric": budget.metric,
        "period": budget.period,
        "limit": float(budget.limit),
        "soft_threshold": float(budget.soft_threshold),
        "key": budget.api_key.prefix if budget.api_key is not None else None,
        "team": budget.team.name if budget.team is not None else None,
        "user_id": budget.user_id,
        "created_at": budget.created_at.isoformat(),
        "current": None
        if current is None
        else {k: current[k] for k in ("spent", "reserved", "remaining", "resets_at")},
    }


def _budget(budget_id: int) -> Budget:
    # <int:…> takes any digits; a bigint holds fewer
    budget = (
        Budget.objects.select_related("api_key", "team").filter(pk=budget_id).first() if budget_id < 2**63 else None
    )
    if budget is None:
        raise NotFound(f"There is no budget {budget_id}.", code="budget_not_found")
    return budget


class BudgetsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Every budget (USD, Wh, gCO2e per key, team or end user)",
        responses={
            200: inline_serializer("BudgetList", {"budgets": inline_serializer("BudgetRow", _BUDGET_FIELDS, many=True)})
        },
    )
    def get(self, request: Request) -> Response:
        budgets = Budget.objects.select_related("api_key", "team").order_by("id")
        return Response({"budgets": [budget_payload(b) for b in budgets]})

    @extend_schema(
        summary="Create a budget (400 naming the param for a bad limit, scope, metric, period, key or team)",
        request=BudgetInput,
        responses={201: BudgetOutput},
    )
    def post(self, request: Request) -> Response:
        data = BudgetInput(data=request.data)
        data.is_valid(raise_exception=True)
        budget = services.budget_create(**data.validated_data)
        return Response(budget_payload(_budget(budget.pk)), status=201)


class BudgetDetailView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Change a budget's limit or soft threshold", request=BudgetUpdate, responses={200: BudgetOutput}
    )
    def patch(self, request: Request, budget_id: int) -> Response:
        budget = _budget(budget_id)
        data = BudgetUpdate(data=request.data)
        data.is_valid(raise_exception=True)
        services.budget_update(budget=budget, **data.validated_data)
        return Response(budget_payload(budget))

    @extend_schema(summary="Delete a budget", responses={204: None})
    def delete(self, request: Request, budget_id: int) -> Response:
        services.budget_delete(budget=_budget(budget_id))
        return Response(status=204)
