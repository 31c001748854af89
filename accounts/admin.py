from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from .models import ApiKey, Team, new_secret


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    readonly_fields = ("created_at",)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = ("name", "prefix", "team", "owner", "is_staff", "is_active", "rpm_limit", "tpm_limit", "created_at")
    list_filter = ("is_staff", "is_active", "team")
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at")
    autocomplete_fields = ("team",)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            raw, obj.prefix, obj.hashed_key = new_secret()
            # Shown once; only the hash is kept.
            messages.warning(request, f"The new key is {raw} — copy it now, it will not be shown again.")
        super().save_model(request, obj, form, change)
