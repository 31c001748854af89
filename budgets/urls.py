from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("budgets", api.BudgetsView.as_view(), name="budgets"),
    path("budgets/<int:budget_id>", api.BudgetDetailView.as_view(), name="budget"),
]
