"""Input and output of the keys and teams API (``accounts.api``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from .models import (
    MODEL_PATTERN_MAX_LENGTH,
    TAG_MAX_LENGTH,
    ApiKey,
    Team,
    validate_model_patterns,
    validate_tags,
)
from .selectors import KeyInfo

MAX_GRACE_SECONDS = 90 * 24 * 3600


def _limit(help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, allow_null=True, required=False, help_text=help_text
    )


def _patterns() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=MODEL_PATTERN_MAX_LENGTH, trim_whitespace=False),
        required=False,
        validators=[validate_model_patterns],
        help_text="Model ids (openai/gpt-4o-mini), globs (openai/*) or category names; empty = every model.",
    )


class TeamSerializer(serializers.ModelSerializer[Team]):
    rpm_limit = _limit("Requests per minute, all the team's keys together; null = no team limit.")
    tpm_limit = _limit("Tokens per minute, all the team's keys together; null = no team limit.")
    max_tokens_cap = _limit("Largest max_tokens its keys may ask for.")
    max_prompt_tokens = _limit("Largest prompt (tokens) its keys may send.")
    max_parallel_requests = _limit("Requests each of its keys may have under way at once.")
    allowed_models = _patterns()
    keys = serializers.SerializerMethodField(help_text="How many keys belong to the team.")

    class Meta:
        model = Team
        fields = [
            "name",
            "rpm_limit",
            "tpm_limit",
            "max_tokens_cap",
            "max_prompt_tokens",
            "max_parallel_requests",
            "allowed_models",
            "keys",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def get_keys(self, team: Team) -> int:
        return team.keys.count()


class KeySerializer(serializers.ModelSerializer[ApiKey]):
    """A key as staff see and set it: never its secret, nor its hash."""

    team = serializers.SlugRelatedField(
        slug_field="name", queryset=Team.objects.all(), allow_null=True, required=False, help_text="A team's name."
    )
    expires_at = serializers.DateTimeField(
        allow_null=True, required=False, help_text="From then on the key answers 401 key_expired."
    )
    expired = serializers.SerializerMethodField()
    rpm_limit = _limit("Requests per minute; null = the team's, else the default.")
    tpm_limit = _limit("Tokens per minute; null = the team's, else the default.")
    max_tokens_cap = _limit("Largest max_tokens accepted.")
    max_prompt_tokens = _limit("Largest prompt (tokens) accepted.")
    max_parallel_requests = _limit("Requests under way at once, across every process; null = no limit.")
    allowed_models = _patterns()
    tags = serializers.ListField(
        child=serializers.CharField(max_length=TAG_MAX_LENGTH, trim_whitespace=False),
        required=False,
        validators=[validate_tags],
    )

    class Meta:
        model = ApiKey
        fields = [
            "name",
            "prefix",
            "team",
            "is_staff",
            "is_active",
            "expires_at",
            "expired",
            "rpm_limit",
            "tpm_limit",
            "max_tokens_cap",
            "max_prompt_tokens",
            "max_parallel_requests",
            "allowed_models",
            "tags",
            "previous_key_expires_at",
            "created_at",
        ]
        read_only_fields = ["prefix", "previous_key_expires_at", "created_at"]
        extra_kwargs = {"is_active": {"help_text": "false: the key is disabled (401 key_disabled)."}}

    def get_expired(self, key: ApiKey) -> bool:
        return key.expires_at is not None and key.expires_at <= timezone.now()

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("expires_at must be in the future.", code="in_the_past")
        return value


class CreatedKeySerializer(KeySerializer):
    key = serializers.CharField(help_text="The raw key: shown this once, never again.")

    class Meta(KeySerializer.Meta):
        fields = [*KeySerializer.Meta.fields, "key"]


class RotateInput(serializers.Serializer[dict[str, Any]]):
    grace_period_seconds = serializers.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_SECONDS,
        required=False,
        help_text="How long the old secret keeps working (default: the KEY_ROTATION_GRACE_S setting; 0: it stops now).",
    )


class LimitsOutput(serializers.Serializer[dict[str, Any]]):
    rpm_limit = serializers.IntegerField(help_text="The key's requests per minute.")
    tpm_limit = serializers.IntegerField(help_text="The key's tokens per minute.")
    max_tokens_cap = serializers.IntegerField()
    max_prompt_tokens = serializers.IntegerField()
    max_parallel_requests = serializers.IntegerField(allow_null=True, help_text="null: no limit.")
    team_rpm_limit = serializers.IntegerField(allow_null=True, help_text="Shared by every key of the team.")
    team_tpm_limit = serializers.IntegerField(allow_null=True, help_text="Shared by every key of the team.")


class BudgetOutput(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField(help_text="The budget's id (staff: /api/v1/budgets/<id>).")
    scope = serializers.CharField()
    metric = serializers.ChoiceField(choices=["usd", "wh", "co2e_g"])
    period = serializers.ChoiceField(choices=["day", "week", "month", "total"])
    limit = serializers.FloatField()
    spent = serializers.FloatField()
    reserved = serializers.FloatField()
    remaining = serializers.FloatField()
    resets_at = serializers.DateTimeField(allow_null=True)


class KeyMeOutput(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    prefix = serializers.CharField()
    team = serializers.CharField(allow_null=True)
    is_staff = serializers.BooleanField()
    limits = LimitsOutput(help_text="What applies to this key: its own, its team's where tighter, else defaults.")
    allowed_models = serializers.ListField(child=serializers.CharField(), help_text="Empty: every model.")
    team_allowed_models = serializers.ListField(
        child=serializers.CharField(), help_text="The team's list; a model must pass both (empty: every model)."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    budgets = BudgetOutput(many=True)


def effective_limits(key: KeyInfo) -> dict[str, int | None]:
    return {
        "rpm_limit": key.rpm_limit or settings.DEFAULT_RPM_LIMIT,
        "tpm_limit": key.tpm_limit or settings.DEFAULT_TPM_LIMIT,
        "max_tokens_cap": key.max_tokens_cap or settings.DEFAULT_MAX_TOKENS_CAP,
        "max_prompt_tokens": key.max_prompt_tokens or settings.DEFAULT_MAX_PROMPT_TOKENS,
        "max_parallel_requests": key.max_parallel_requests,
        "team_rpm_limit": key.team_rpm_limit,
        "team_tpm_limit": key.team_tpm_limit,
    }
