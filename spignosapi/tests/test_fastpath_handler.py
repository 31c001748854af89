"""spignosapi/fastpath/handler.py answers as Django's own ASGIHandler does.

The same requests, in-process over ASGI, go through ``django.core.handlers.asgi.ASGIHandler`` and through
``GatewayASGIHandler`` (same settings, same middleware): async and sync views, authenticated or not, a body
sent in several chunks, a body over the size limit, a redirect and a 404. Status, headers and body must be
the same, byte for byte. The one intended difference (a chunked body reaches a DRF view) is asserted as such.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from accounts.services import apikey_create
from jobs.models import Job
from jobs.streams import publish_once
from spignosapi import loops, snapshots
from spignosapi.fastpath.handler import GatewayASGIHandler
from tests.asgi import Reply, serve

pytestmark = pytest.mark.django_db(transaction=True)  # views run in the handlers' threads


@pytest.fixture(autouse=True)
def _forget_the_keys_read() -> Iterator[None]:
    yield
    # The process's key table read this test's keys, which the test's end deletes without telling it.
    for snapshot in snapshots.registry.values():
        snapshot.invalidate()


def through_both(method: str, path: str, **options: Any) -> tuple[Reply, Reply]:
    async def both() -> tuple[Reply, Reply]:
        stock = await serve(ASGIHandler(), method, path, **options)
        ours = await serve(GatewayASGIHandler(), method, path, **options)
        return stock, ours

    return loops.run(both())


def test_it_answers_every_kind_of_request_as_djangos_handler() -> None:
    _, key = apikey_create(name="k")
    _, staff = apikey_create(name="staff", is_staff=True)
    over_the_limit = b'{"prompt": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'
    requests: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/health", {}, 200),  # an async view, no key
        ("GET", "/api/v1/status", {}, 401),  # a DRF (sync) view, no key
        ("GET", "/api/v1/status", {"key": key}, 200),  # a DRF view, in the request's thread, with the database
        ("GET", "/v1/models", {"key": key}, 200),  # an async view with the key table
        ("POST", "/api/v1/generate", {"key": key, "chunks": (b'{"prompt": ',)}, 400),  # not JSON
        ("POST", "/api/v1/generate", {"key": key, "chunks": (b'{"prompt": "hi", ', b'"top_p": 7}')}, 400),
        ("POST", "/api/v1/generate", {"key": key, "chunks": (b'{"max_tokens":', b" -1}"), "length": False}, 400),
        ("POST", "/api/v1/generate", {"key": key, "chunks": (over_the_limit,)}, 413),
        ("POST", "/api/v1/routing/categories", {"key": staff, "chunks": (b'{"name": "", "chain": 3}',)}, 400),
        ("DELETE", "/api/v1/generate", {"key": key}, 405),
        ("GET", "/admin", {}, 301),  # CommonMiddleware's APPEND_SLASH
        ("GET", "/api/v1/no-such-route", {}, 404),
        ("GET", "/api/v1/jobs/%00", {}, 404),
    ]
    for method, path, options, status in requests:
        stock, ours = through_both(method, path, **options)
        assert ours == stock, (method, path, options.get("chunks"))
        assert stock[0] == status, (method, path, stock)


def test_it_streams_a_response_as_djangos_handler() -> None:
    """An SSE stream (a finished job's, replayed from Redis): ours gives the request's thread back while it
    streams; what the client receives is the same."""
    key_row, key = apikey_create(name="k")
    job = Job.objects.create(api_key=key_row, status=Job.Status.SUCCEEDED, request={"prompt": "hi"}, output="ab")
    complete = {"type": "complete", "meta": {"completion_tokens": 2}}
    for message in ({"type": "chunk", "text": "a"}, {"type": "chunk", "text": "b"}, complete):
        loops.run(publish_once(job.session_id, message))

    stock, ours = through_both("GET", f"/api/v1/stream/{job.session_id}", key=key)

    assert ours == stock
    assert stock[0] == 200
    assert (b"Content-Type", b"text/event-stream") in stock[1]
    assert stock[2].decode() == (
        'id: 1\ndata: {"type":"chunk","text":"a"}\n\n'
        'id: 2\ndata: {"type":"chunk","text":"b"}\n\n'
        'id: 3\ndata: {"type":"complete","meta":{"completion_tokens":2}}\n\n'
    )


def test_a_chunked_body_reaches_a_drf_view_only_through_ours() -> None:
    """Django leaves a body without Content-Length out of ``CONTENT_LENGTH``, and DRF then reads no body at
    all: the stock handler validates ``{}``. Ours sets the length once the body is read (see its docstring)."""
    _, staff = apikey_create(name="staff", is_staff=True)
    body = (b'{"name": "Not A Slug!", ', b'"chain": []}')
    stock, ours = through_both("POST", "/api/v1/routing/categories", key=staff, chunks=body, length=False)
    assert (stock[0], ours[0]) == (400, 400)
    assert json.loads(stock[2])["error"] == {
        "message": "name: This field is required.",  # the body was never read
        "type": "invalid_request_error",
        "code": "required",
        "param": "name",
    }
    assert json.loads(ours[2])["error"]["code"] == "invalid"  # the name that was sent is not a slug
    with_length, _ = through_both("POST", "/api/v1/routing/categories", key=staff, chunks=body)
    assert ours == with_length  # ours answers as Django does when the client sends the length
