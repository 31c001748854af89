"""Driving an ASGI application in-process, as a server would, for tests that compare two of them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


async def serve(
    app: Any,
    method: str,
    path: str,
    *,
    key: str | None = None,
    chunks: tuple[bytes, ...] = (b"",),
    length: bool = True,
    content_type: str = "application/json",
    headers: Sequence[tuple[str, str]] = (),
) -> Reply:
    """One request through the ASGI ``app`` as uvicorn would hand it over, in this event loop; ``length=False``
    sends no Content-Length (a chunked body). Returns the status, the headers in order and the whole body."""
    sent_headers = [(b"host", b"testserver"), (b"x-request-id", b"fastpath-equivalence")]
    sent_headers += [(name.lower().encode(), value.encode()) for name, value in headers]
    if key is not None:
        sent_headers.append((b"authorization", f"Bearer {key}".encode()))
    body = b"".join(chunks)
    if body:
        sent_headers.append((b"content-type", content_type.encode()))
        if length:
            sent_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": sent_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1} for n, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Future()  # the client stays connected until the response is sent
        raise AssertionError("unreachable")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, rest = sent[0], sent[1:]
    assert start["type"] == "http.response.start"
    return start["status"], list(start["headers"]), b"".join(m.get("body", b"") for m in rest)
