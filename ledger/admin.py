"""The usage ledger in the admin: read-only, records and roll-ups alike (they are written by the gateway)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import UsageDaily, UsageDailyByUser, UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin[UsageRecord]):
    list_display = [
        "created_at",
        "request_id",
        "api_key",
        "user_id",
        "endpoint",
        "category",
        "model",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "cost_usd",
        "energy_wh",
    ]
    list_filter = ["status", "endpoint", "category", "provider", "route_mode", "stream"]
    search_fields = ["request_id", "user_id", "model"]
    date_hierarchy = "created_at"
    list_select_related = ["api_key"]

    def get_readonly_fields(self, request: HttpRequest, obj: UsageRecord | None = None) -> list[str]:
        return [field.name for field in UsageRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False  # the ledger is read-only, deletions included


class ReadOnlyRollup(admin.ModelAdmin[Any]):
    list_display = [
        "day",
        "api_key_id",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "energy_wh",
        "co2e_g",
        "cost_usd",
    ]
    date_hierarchy = "day"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageDaily)
class UsageDailyAdmin(ReadOnlyRollup):
    list_display = ["day", "model", "provider", *ReadOnlyRollup.list_display[1:]]
    list_filter = ["provider"]
    search_fields = ["model"]


@admin.register(UsageDailyByUser)
class UsageDailyByUserAdmin(ReadOnlyRollup):
    list_display = ["day", "user_id", *ReadOnlyRollup.list_display[1:]]
    search_fields = ["user_id"]
