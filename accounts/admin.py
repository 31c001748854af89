from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import ApiKey, Team, validate_model_patterns, validate_tags
from .services import apikey_rotate, unique_secret


class LinesField(forms.Field):
    """A list of strings edited one a line (allowed models, tags), stored as a JSON list."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return value
        return [line.strip() for line in str(value or "").splitlines() if line.strip()]


class TeamForm(forms.ModelForm[Team]):
    allowed_models = LinesField(
        required=False,
        validators=[validate_model_patterns],
        help_text="One a line: a model id, a glob (openai/*) or a category name. Empty: every model.",
    )

    class Meta:
        model = Team
        fields = "__all__"


class ApiKeyForm(forms.ModelForm[ApiKey]):
    allowed_models = LinesField(
        required=False,
        validators=[validate_model_patterns],
        help_text="One a line: a model id, a glob (openai/*) or a category name. Empty: every model (the team's).",
    )
    tags = LinesField(required=False, validators=[validate_tags], help_text="One a line.")

    class Meta:
        model = ApiKey
        fields = "__all__"


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    form = TeamForm
    list_display = ("name", "rpm_limit", "tpm_limit", "max_parallel_requests", "created_at")
    search_fields = ("name",)
    readonly_fields = ("created_at",)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    form = ApiKeyForm
    list_display = (
        "name",
        "prefix",
        "team",
        "state",
        "expires_at",
        "is_staff",
        "rpm_limit",
        "tpm_limit",
        "max_parallel_requests",
        "created_at",
    )
    list_filter = ("is_staff", "is_active", "team")
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "previous_key_expires_at", "created_at")
    autocomplete_fields = ("team",)
    actions = ["rotate"]

    @admin.display(description="state")
    def state(self, key: ApiKey) -> str:
        if not key.is_active:
            return "disabled"
        if key.expires_at is not None and key.expires_at <= timezone.now():
            return "expired"
        return "active"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            raw, obj.prefix, obj.hashed_key = unique_secret()
            # Shown once; only the hash is kept.
            messages.warning(request, f"The new key is {raw} — copy it now, it will not be shown again.")
        super().save_model(request, obj, form, change)

    @admin.action(description="Rotate the selected keys (the old secrets keep working for the grace period)")
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            key, raw = apikey_rotate(key=key)
            until = key.previous_key_expires_at
            grace = f"the old one works until {until:%Y-%m-%d %H:%M} UTC" if until else "the old one no longer works"
            messages.warning(
                request, f"New secret for {key.name!r}: {raw} — copy it now, it will not be shown again; {grace}."
            )
