"""WebSocket routes (Channels)."""

from __future__ import annotations

from typing import Any

from django.urls import path

from jobs.consumers import JobStreamConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/v1/stream/<str:session_id>/", JobStreamConsumer.as_asgi()),
]
