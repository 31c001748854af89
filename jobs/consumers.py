"""WebSocket ``/ws/v1/stream/<session_id>/``: relays a job's stream to its owner (thin: auth, then relay)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from asgiref.typing import WebSocketScope
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.models import KEY_PREFIX
from accounts.selectors import apikey_lookup
from spignosapi import shutdown

from . import lifecycle, selectors
from .streams import subscribe

# Close codes: 4401 no or bad credentials, 4404 no such stream (or not yours: the same answer, so that a
# stream's existence is not given away). The handshake is accepted first and the socket then closed with
# the code: a refused handshake reaches a client as a bare HTTP 403 (a browser sees only code 1006).
UNAUTHORIZED, NOT_FOUND = 4401, 4404
# The standard close code for "the server is restarting: reconnect" (RFC 6455 registry).
SERVICE_RESTART = 1012


def _raw_key(scope: WebSocketScope) -> str | None:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    # Browsers cannot set headers on a WebSocket: a key may come as the subprotocol "apikey.<key>".
    for protocol in scope.get("subprotocols", []):
        if protocol.startswith("apikey." + KEY_PREFIX):
            return protocol[len("apikey.") :]
    return None


class JobStreamConsumer(AsyncJsonWebsocketConsumer):
    relay: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        raw = _raw_key(self.scope)
        user = self.scope.get("user")
        key = await sync_to_async(apikey_lookup, thread_sensitive=False)(raw) if raw else None
        # A browser fails a handshake that does not echo the subprotocol it offered: echo it even to refuse.
        protocols = [p for p in self.scope.get("subprotocols", []) if p.startswith("apikey.")]
        await self.accept(subprotocol=protocols[0] if protocols else None)
        if key is None and not (user is not None and user.is_authenticated):
            await self.close(code=UNAUTHORIZED)
            return
        job = await sync_to_async(selectors.job_for, thread_sensitive=False)(
            {"session_id": session_id},
            key_id=key.id if key else None,
            user_id=user.pk if key is None and user is not None else None,
            is_staff=key.is_staff if key else bool(getattr(user, "is_staff", False)),
        )
        if job is None:
            await self.close(code=NOT_FOUND)
            return
        self.relay = asyncio.create_task(self._relay(session_id, job.pk))

    async def _relay(self, session_id: str, job_id: uuid.UUID) -> None:
        ending = lifecycle.stream_ending(job_id)
        async for message in subscribe(session_id, stop=shutdown.stopping(), ending=ending):
            if message is not None:
                await self.send_json(message)
        # The job ended, or this process is shutting down: then the client reconnects (to another process) and
        # gets the replay.
        await self.close(code=SERVICE_RESTART if shutdown.begun() else None)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The stream is one-way; anything a client sends is ignored (malformed frames included).
        return None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        return None

    async def disconnect(self, code: int) -> None:
        if self.relay is not None:
            self.relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.relay
