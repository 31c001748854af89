from __future__ import annotations

from typing import Any

from rest_framework import serializers

from routing.serializers import GenerateInput


class GenerateAsyncInput(GenerateInput):
    priority = serializers.IntegerField(min_value=-10, max_value=10, default=0)


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
