from __future__ import annotations

from django.contrib import admin

from .models import Budget


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin[Budget]):
    list_display = ["id", "scope", "metric", "period", "limit", "soft_threshold", "api_key", "team", "user_id"]
    list_filter = ["scope", "metric", "period"]
    search_fields = ["user_id", "api_key__name", "api_key__prefix", "team__name"]
    raw_id_fields = ["api_key"]
