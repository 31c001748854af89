from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import Budget
from .selectors import budget_table


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin[Budget]):
    list_display = ["id", "scope", "metric", "period", "limit", "soft_threshold", "api_key", "team", "user_id"]
    list_filter = ["scope", "metric", "period"]
    search_fields = ["user_id", "api_key__name", "api_key__prefix", "team__name"]
    raw_id_fields = ["api_key"]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        # "Delete selected" deletes in bulk, past Budget.delete(): every process must still reload its budgets.
        super().delete_queryset(request, queryset)
        budget_table.invalidate()
        transaction.on_commit(budget_table.bump)
