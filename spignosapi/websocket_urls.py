"""The platform's WebSocket URLs (Channels), as ``urls.py`` holds its HTTP ones; ``asgi.py`` serves them.

Named for what it holds: as ``routing.py`` (Channels' habit) it read as the ``routing`` app.
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from jobs.consumers import NOT_FOUND, JobStreamConsumer


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Any other path (or a session id that cannot be one) is closed with 4404, as an unknown stream is:
    without it Channels' router raises, and the server logs an error and answers 500."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=NOT_FOUND)


# Channels' URLRouter takes Django's path() with an ASGI app where django-stubs expect a view: hence Any.
_job_stream: Any = JobStreamConsumer.as_asgi()
_unknown_path: Any = UnknownPathConsumer.as_asgi()

websocket_urlpatterns: list[Any] = [
    path("ws/v1/stream/<session:session_id>/", _job_stream),
    re_path(r"", _unknown_path),
]
