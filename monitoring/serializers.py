"""Inputs and outputs of the monitoring API (shapes in the contract and the monitoring brief)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .models import Bucket, Probe, ProbeKind
from .selectors import incident_payload

BUCKETS = [b.value for b in Bucket]


class ResultsQuery(serializers.Serializer[Any]):
    model = serializers.CharField(required=False, allow_blank=True, max_length=260)
    provider = serializers.CharField(required=False, allow_blank=True, max_length=50)
    since = serializers.DateTimeField(required=False)
    bucket = serializers.ChoiceField(choices=BUCKETS, required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=ProbeKind.values, required=False, allow_blank=True)


class HistoryQuery(serializers.Serializer[Any]):
    model = serializers.CharField(max_length=260)
    hours = serializers.IntegerField(min_value=1, max_value=24 * 30, default=24)


class PlatformStatusQuery(serializers.Serializer[Any]):
    model = serializers.CharField(required=False, max_length=260)
    window = serializers.ChoiceField(choices=["1h", "24h", "7d"], default="24h")


class RefreshInput(serializers.Serializer[Any]):
    models = serializers.ListField(
        child=serializers.CharField(max_length=260), required=False, allow_empty=False, max_length=500
    )


class ProbeOutput(serializers.ModelSerializer[Probe]):
    model = serializers.SerializerMethodField()
    provider = serializers.SerializerMethodField()
    error_type = serializers.CharField(allow_null=True, read_only=True, help_text="null when the probe succeeded")
    error = serializers.CharField(allow_null=True, read_only=True, help_text="null when the probe succeeded")

    class Meta:
        model = Probe
        fields = [
            "id",
            "model",
            "provider",
            "kind",
            "status",
            "ok",
            "http_status",
            "error_type",
            "error",
            "ttfb_ms",
            "total_ms",
            "tokens_per_sec",
            "prompt_tokens",
            "completion_tokens",
            "energy_wh",
            "checked_at",
        ]

    def get_model(self, probe: Probe) -> str:
        return probe.model.model_id

    def get_provider(self, probe: Probe) -> str:
        return probe.model.provider.name

    def to_representation(self, instance: Probe) -> dict[str, Any]:
        data = dict(super().to_representation(instance))
        # The log shows no message as null, like the stats; error_type stays "" -> null too.
        data["error"] = data["error"] or None
        data["error_type"] = data["error_type"] or None
        return data


class RefreshAccepted(serializers.Serializer[Any]):
    status = serializers.CharField()
    task_id = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField())


class IncidentsQuery(serializers.Serializer[Any]):
    model = serializers.CharField(required=False, allow_blank=True, max_length=260)
    state = serializers.ChoiceField(choices=["open", "resolved"], required=False, allow_blank=True)


class IncidentUpdateOutput(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=["investigating", "identified", "monitoring", "resolved"])
    message = serializers.CharField()
    created_at = serializers.DateTimeField()


class IncidentOutput(serializers.Serializer[Any]):
    """``monitoring.selectors.incident_payload``'s shape, for the schema."""

    id = serializers.IntegerField()
    model = serializers.CharField(allow_null=True, help_text="null: the whole platform")
    title = serializers.CharField()
    state = serializers.ChoiceField(choices=["open", "resolved"])
    cause = serializers.ChoiceField(choices=["probes", "breaker", "manual"])
    automatic = serializers.BooleanField()
    started_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()
    updates = IncidentUpdateOutput(many=True)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return incident_payload(instance)
