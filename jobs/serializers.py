from __future__ import annotations

from typing import Any

from rest_framework import serializers

from routing.serializers import GenerateInput

# The turns a conversation may carry before its new prompt (the chat page sends them back with each prompt).
CONVERSATION_ROLES = ("user", "assistant")


class GenerateAsyncInput(GenerateInput):
    priority = serializers.IntegerField(min_value=-10, max_value=10, default=0)
    # A conversation's earlier turns, oldest first: sent to the model between ``system`` and ``prompt``.
    messages = serializers.ListField(child=serializers.JSONField(), required=False, max_length=1_000)

    def validate_messages(self, value: list[Any]) -> list[dict[str, str]]:
        for index, message in enumerate(value):
            if not isinstance(message, dict) or set(message) != {"role", "content"}:
                raise serializers.ValidationError(
                    f"messages[{index}] must be an object with exactly role and content.", code="invalid"
                )
            if message["role"] not in CONVERSATION_ROLES:
                raise serializers.ValidationError(
                    f"messages[{index}].role must be one of {', '.join(CONVERSATION_ROLES)}.", code="invalid_role"
                )
            if not isinstance(message["content"], str) or not message["content"]:
                raise serializers.ValidationError(
                    f"messages[{index}].content must be a non-empty string.", code="invalid_content"
                )
        return value


class JobAccepted(serializers.Serializer[Any]):
    status = serializers.CharField()
    job_id = serializers.UUIDField()
    task_id = serializers.CharField()
    session_id = serializers.CharField()
    stream_url = serializers.CharField()
    ws_url = serializers.CharField()
    status_url = serializers.CharField()


class JobOutput(serializers.Serializer[Any]):
    job_id = serializers.UUIDField(source="id")
    status = serializers.CharField()
    output = serializers.CharField()
    meta = serializers.JSONField(allow_null=True)
    error = serializers.JSONField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    priority = serializers.IntegerField()
    queue = serializers.CharField()
    session_id = serializers.CharField()
