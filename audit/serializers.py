"""The shapes of ``GET /api/v1/audit``: its query and its entries."""

from __future__ import annotations

from typing import Any

from auditlog.models import LogEntry
from rest_framework import serializers

from .registry import OBJECT_TYPES
from .selectors import entry_payload


class AuditQuery(serializers.Serializer[Any]):
    model = serializers.ChoiceField(choices=OBJECT_TYPES, required=False, help_text="the changed object's type")
    object = serializers.CharField(required=False, max_length=255, help_text="its object_id (with model)")
    actor = serializers.CharField(required=False, max_length=150, help_text="a user's name, a key's name or prefix")
    since = serializers.DateTimeField(required=False, help_text="ISO 8601, inclusive")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"since": "since must not be after until."})
        return attrs


class AuditActor(serializers.Serializer[Any]):
    type = serializers.ChoiceField(choices=["user", "key"])
    name = serializers.CharField(help_text="the user's name, or the key's name")
    prefix = serializers.CharField(allow_null=True, help_text="a key's prefix (null for a user)")
    user = serializers.CharField(allow_null=True, help_text="the user; for a key, its owner (null if none)")


class AuditEntryOutput(serializers.Serializer[LogEntry]):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    actor = AuditActor(allow_null=True, help_text="null: a change made outside any request (a command)")
    action = serializers.ChoiceField(choices=["create", "update", "delete", "reset"])
    object_type = serializers.CharField(help_text=f"one of {', '.join(OBJECT_TYPES)}")
    object_id = serializers.CharField(help_text="the object's primary key")
    object_repr = serializers.CharField(help_text="the object as it read at the time")
    changes = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField(allow_null=True), min_length=2, max_length=2),
        help_text="field → [before, after] (null before a create, after a delete); secrets are never copied",
    )

    def to_representation(self, instance: LogEntry) -> dict[str, Any]:
        payload = entry_payload(instance)
        payload["at"] = serializers.DateTimeField().to_representation(payload["at"])
        return payload
