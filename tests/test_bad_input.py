"""Bad input at every front door, over real HTTP and WebSocket against a running gateway of this module's own
(its log is read after every test: bad input is answered, never logged as an error).

Non-finite numbers, bodies over the size limit (with a length and chunked), prompts over the key's cap,
unknown models and categories, absurd ``max_tokens``, job and stream ids that are unknown, malformed or
another key's, and WebSocket and SSE clients that send garbage or leave mid-stream.
(Unicode, NUL characters and wrong shapes: ``tests/test_hostile_input.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import subprocess
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import redis
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from accounts.services import apikey_create
from jobs.models import Job
from jobs.streams import Publisher
from rag.models import Document, EmbeddingBatch
from routing.models import Category, ModelAlias
from tests.fixtures import Fake, Gateway, wait_for_idle_workers
from tests.helpers import wait_until
from tests.http import Reply, call, sse_events

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello"}]
# Every POST front door with a body it accepts; a staff key may call all of them.
POSTS: list[tuple[str, dict[str, Any]]] = [
    ("/api/v1/generate", {"prompt": "hello", "max_tokens": 2}),
    ("/api/v1/generate/async", {"prompt": "hello", "max_tokens": 2}),
    ("/v1/chat/completions", {"model": "router", "messages": HELLO, "max_tokens": 2}),
    ("/chat/completions", {"model": "router", "messages": HELLO, "max_tokens": 2}),
    ("/v1/responses", {"model": "router", "input": "hello", "max_output_tokens": 2, "store": False}),
    ("/api/v1/embeddings", {"input": ["hello"], "model": "demo/demo-embed"}),
    ("/v1/embeddings", {"input": "hello", "model": "demo/demo-embed"}),
    ("/api/v1/embeddings/batches", {"input": ["hello"], "model": "demo/demo-embed"}),
    ("/api/v1/rag", {"query": "hello", "collection": "kb", "max_tokens": 2}),
    ("/api/v1/rag/collections/kb/documents", {"documents": [{"id": "d", "text": "hello"}]}),
    ("/api/v1/routing/categories", {"name": "fresh", "keywords": ["fresh"]}),
    ("/api/v1/routing/aliases", {"name": "fresh-alias", "target": "code"}),
    ("/api/v1/routing/model-mapping", {"category": "code", "models": ["demo/demo-fast"]}),
    ("/api/v1/monitoring/refresh", {"models": ["demo/demo-fast"]}),
]
GENERATION_POSTS = [(path, body) for path, body in POSTS if "max_tokens" in body]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


@pytest.fixture
def gateway(logged_gateway: Gateway) -> Gateway:
    """The module's own server: after each test its log must hold no error."""
    return logged_gateway


@pytest.fixture
def staff(gateway: Gateway) -> str:
    return apikey_create(name="staff", is_staff=True)[1]


def assert_nothing_happened(fake: Fake) -> None:
    """Nothing reached the upstream, and nothing was queued or stored."""
    assert fake.stats()["requests"] == {}
    assert Job.objects.count() == EmbeddingBatch.objects.count() == Document.objects.count() == 0
    assert not Category.objects.filter(name="fresh").exists()
    assert not ModelAlias.objects.exists()


def error_of(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.text)
    assert reply.headers["content-type"].startswith("application/json"), reply.text
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"message", "type", "code", "param"}, body
    return dict(body["error"])


# --- invalid JSON and wrong media types -------------------------------------------------------------------


# Doors served by DRF views, which word "not an object" as DRF does (the gateway's own views: invalid_body).
DRF_DOORS = {
    "/api/v1/embeddings/batches",
    "/api/v1/rag/collections/kb/documents",
    "/api/v1/routing/categories",
    "/api/v1/routing/aliases",
    "/api/v1/routing/model-mapping",
    "/api/v1/monitoring/refresh",
}


@pytest.mark.parametrize("payload", [b"{", b'{"prompt": "hi",}', b"\xff\xfe{}", b"{'prompt': 'hi'}"])
def test_a_body_that_is_not_json_is_a_400_at_every_post_door(
    gateway: Gateway, fake: Fake, staff: str, payload: bytes
) -> None:
    for path, _ in POSTS:
        error = error_of(call("POST", gateway.url + path, raw=payload, key=staff), 400)
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_json", None), path
        assert error["message"].startswith("JSON parse error - "), path
    assert_nothing_happened(fake)


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"null", b"42"])
def test_json_that_is_not_an_object_is_a_400_at_every_post_door(
    gateway: Gateway, fake: Fake, staff: str, payload: bytes
) -> None:
    for path, _ in POSTS:
        if path == "/api/v1/monitoring/refresh" and payload == b"null":
            continue  # its body is optional: none, or null, means every model
        error = error_of(call("POST", gateway.url + path, raw=payload, key=staff), 400)
        drf_code = "null" if payload == b"null" else "invalid"
        expected = drf_code if path in DRF_DOORS else "invalid_body"
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", expected, None), path
    assert_nothing_happened(fake)


@pytest.mark.parametrize(
    "text",
    [b"\xed\xa0\x80", b"\xc0\xaf", b"\x80", b"\xf8\x88\x80\x80\x80"],
    ids=["encoded-lone-surrogate", "overlong-slash", "stray-continuation-byte", "five-byte-sequence"],
)
def test_a_body_that_is_not_utf8_is_a_400_at_every_post_door(
    gateway: Gateway, fake: Fake, staff: str, text: bytes
) -> None:
    # Raw bytes, not \u escapes: a lenient decoder would hand a lone surrogate on to the database.
    for path, body in POSTS:
        encoded = json.dumps({**body, "prompt": "@", "query": "@", "input": ["@"], "name": "@"}).encode()
        error = error_of(
            call("POST", gateway.url + path, raw=encoded.replace(b"@", b"a" + text + b"b"), key=staff), 400
        )
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_json", None), path
    assert_nothing_happened(fake)


def test_a_body_of_another_media_type_is_a_415_at_every_post_door(gateway: Gateway, fake: Fake, staff: str) -> None:
    for path, body in POSTS:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            reply = call("POST", gateway.url + path, body, key=staff, headers={"Content-Type": content_type})
            error = error_of(reply, 415)
            assert (error["type"], error["code"]) == ("invalid_request_error", "unsupported_media_type"), path
    assert_nothing_happened(fake)


# --- non-finite numbers -----------------------------------------------------------------------------------


def with_literal(body: dict[str, Any], field: str, literal: str) -> bytes:
    """``body`` as JSON with ``field`` set to ``literal`` written as is (json.dumps would not write 1e999)."""
    marker = "__literal__"
    return json.dumps({**body, field: marker}).replace(f'"{marker}"', literal).encode()


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("field", ["temperature", "top_p", "max_tokens"])
def test_non_finite_numbers_are_invalid_json_at_every_generation_door(
    gateway: Gateway, fake: Fake, staff: str, field: str, literal: str
) -> None:
    for path, body in GENERATION_POSTS:
        for streamed in (False, True):
            raw = with_literal({**body, "stream": streamed}, field, literal)
            error = error_of(call("POST", gateway.url + path, raw=raw, key=staff), 400)
            assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_json", None)
            assert error["message"].startswith("JSON parse error - "), error
            assert literal.lstrip("-") in error["message"], error
    assert_nothing_happened(fake)


@pytest.mark.parametrize("literal", NON_FINITE)
def test_a_non_finite_number_anywhere_in_a_body_is_invalid_json(
    gateway: Gateway, fake: Fake, staff: str, literal: str
) -> None:
    # Where no field is a number (tool schemas, stop sequences, inputs), it would have been sent upstream.
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "number", "maximum": "__x__"}}}
    nested = {
        "/v1/chat/completions": {"model": "router", "messages": HELLO, "tools": [tool]},
        "/api/v1/embeddings": {"input": ["__x__"], "model": "demo/demo-embed"},
        "/api/v1/rag/collections/kb/documents": {"documents": [{"id": "d", "text": "hello", "extra": "__x__"}]},
        "/api/v1/routing/categories": {"name": "fresh", "keywords": ["fresh"], "extra": ["__x__"]},
    }
    for path, body in nested.items():
        raw = json.dumps(body).replace('"__x__"', literal).encode()
        error = error_of(call("POST", gateway.url + path, raw=raw, key=staff), 400)
        assert (error["code"], error["param"]) == ("invalid_json", None), (path, error)
    assert_nothing_happened(fake)


# --- bodies over the size limit ---------------------------------------------------------------------------


TOO_LARGE = ("invalid_request_error", "request_too_large", None)


def oversized_body() -> bytes:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # the server runs with the same (default) setting
    return b'{"prompt": "' + b"x" * limit + b'"}'


def post_chunked(url: str, path: str, body: bytes, key: str) -> Reply:
    """POST with ``Transfer-Encoding: chunked`` (no Content-Length), in 64 KiB chunks."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        connection.request("POST", path, body=chunks, headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode())
    finally:
        connection.close()


def test_a_body_over_the_limit_is_a_413_at_every_post_door(gateway: Gateway, fake: Fake, staff: str) -> None:
    body = oversized_body()
    for path, _ in POSTS:
        with_length = call("POST", gateway.url + path, raw=body, key=staff)
        for reply in (with_length, post_chunked(gateway.url, path, body, staff)):
            error = error_of(reply, 413)
            assert (error["type"], error["code"], error["param"]) == TOO_LARGE, path
    assert_nothing_happened(fake)


def test_a_chunked_body_within_the_limit_is_read_at_every_post_door(
    gateway: Gateway, fake: Fake, staff: str, celery_worker: subprocess.Popen[bytes]
) -> None:
    # Without a Content-Length the body must still be read (not taken for an empty one). The session's worker
    # runs what the doors queue (asked for here: run alone, the test would otherwise wait for no worker).
    for path, body in POSTS:
        reply = post_chunked(gateway.url, path, json.dumps(body).encode(), staff)
        if path == "/api/v1/rag":
            assert error_of(reply, 404)["code"] == "collection_not_found"
        else:
            assert reply.status in (200, 201, 202), (path, reply.status, reply.text)
    # The job, the batch, the ingest and the probe it queued run on the session's worker: let them end.
    assert wait_for_idle_workers()


# --- prompts and max_tokens over the key's caps ------------------------------------------------------------


def capped_key(**caps: int) -> str:
    key, raw = apikey_create(name="capped")
    for name, value in caps.items():
        setattr(key, name, value)
    key.save()
    return raw


LONG_PROMPT = " ".join(["word"] * 300)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_prompt_over_the_keys_cap_is_refused_at_every_generation_door(
    gateway: Gateway, fake: Fake, streamed: bool
) -> None:
    raw = capped_key(max_prompt_tokens=100)
    bodies: dict[str, dict[str, Any]] = {
        "/api/v1/generate": {"prompt": LONG_PROMPT},
        "/api/v1/generate/async": {"prompt": LONG_PROMPT},
        "/v1/chat/completions": {"model": "router", "messages": [{"role": "user", "content": LONG_PROMPT}]},
    }
    for path, body in bodies.items():
        error = error_of(call("POST", gateway.url + path, {**body, "stream": streamed}, key=raw), 400)
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "prompt_too_large", "prompt")
        assert error["message"].startswith("The prompt has 30") and error["message"].endswith("at most 100.")
    assert_nothing_happened(fake)


@pytest.mark.parametrize("streamed", [False, True])
def test_max_tokens_over_the_keys_cap_is_refused_at_every_generation_door(
    gateway: Gateway, fake: Fake, streamed: bool
) -> None:
    raw = capped_key(max_tokens_cap=10)
    for path, body in GENERATION_POSTS:
        if path == "/api/v1/rag":
            continue  # (no collection: the cap is checked with the route, after retrieval)
        reply = call("POST", gateway.url + path, {**body, "max_tokens": 11, "stream": streamed}, key=raw)
        assert error_of(reply, 400) == {
            "message": "max_tokens must be at most 10 for this key.",
            "type": "invalid_request_error",
            "code": "max_tokens_too_large",
            "param": "max_tokens",
        }, path
    assert_nothing_happened(fake)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (-1, "min_value"),
        (0, "min_value"),
        (10**30, "max_value"),
        (1.5, "invalid"),
        ("many", "invalid"),
        (True, "invalid"),
    ],
)
def test_absurd_max_tokens_are_refused_at_every_generation_door(
    gateway: Gateway, fake: Fake, staff: str, value: Any, code: str
) -> None:
    for path, body in GENERATION_POSTS:
        for streamed in (False, True):
            reply = call("POST", gateway.url + path, {**body, "max_tokens": value, "stream": streamed}, key=staff)
            error = error_of(reply, 400)
            assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, "max_tokens")
    assert_nothing_happened(fake)


# --- unknown models and categories -------------------------------------------------------------------------


UNKNOWN_MODEL = {
    "message": "The model 'demo/no-such-model' does not exist.",
    "type": "not_found_error",
    "code": "model_not_found",
    "param": "model",
}
UNKNOWN_CATEGORY = {
    "message": "The category 'nope' does not exist.",
    "type": "not_found_error",
    "code": "category_not_found",
    "param": "category",
}


@pytest.mark.parametrize("streamed", [False, True])
def test_an_unknown_model_or_category_is_a_404_at_every_generation_door(
    gateway: Gateway, fake: Fake, streamed: bool
) -> None:
    _, raw = apikey_create(name="k")
    for path in ("/api/v1/generate", "/api/v1/generate/async"):
        for field, expected in (("model", UNKNOWN_MODEL), ("category", UNKNOWN_CATEGORY)):
            value = "demo/no-such-model" if field == "model" else "nope"
            reply = call("POST", gateway.url + path, {"prompt": "hi", field: value, "stream": streamed}, key=raw)
            assert error_of(reply, 404) == expected, path
    # The OpenAI door takes a model id or a category name in ``model``.
    reply = call(
        "POST", gateway.url + "/v1/chat/completions", {"model": "demo/no-such-model", "messages": HELLO}, key=raw
    )
    assert error_of(reply, 404) == UNKNOWN_MODEL
    assert_nothing_happened(fake)


def test_rag_refuses_an_unknown_model_or_category_and_what_is_over_the_keys_caps(
    gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    raw = capped_key(max_tokens_cap=10, max_prompt_tokens=300)
    documents = {"documents": [{"id": "d", "text": "Tides rise and fall twice a day."}]}
    ingest = call(
        "POST",
        gateway.url + "/api/v1/rag/collections/kb/documents",
        {**documents, "embedding_model": "demo/demo-embed"},
        key=raw,
    )
    assert ingest.status == 202, ingest.text
    assert wait_until(
        lambda: call("GET", gateway.url + "/api/v1/rag/collections/kb", key=raw).json()["status"] == "ready", timeout=60
    )
    question: dict[str, Any] = {"query": "tides", "collection": "kb", "max_tokens": 2}
    for streamed in (False, True):
        for extra, expected in (
            ({"model": "demo/no-such-model"}, UNKNOWN_MODEL),
            ({"category": "nope"}, UNKNOWN_CATEGORY),
        ):
            reply = call("POST", gateway.url + "/api/v1/rag", {**question, **extra, "stream": streamed}, key=raw)
            assert error_of(reply, 404) == expected
        over_the_caps: list[tuple[dict[str, Any], str, str]] = [
            ({"max_tokens": 11}, "max_tokens_too_large", "max_tokens"),
            ({"query": LONG_PROMPT + LONG_PROMPT}, "prompt_too_large", "prompt"),
        ]
        for extra, code, param in over_the_caps:
            reply = call("POST", gateway.url + "/api/v1/rag", {**question, **extra, "stream": streamed}, key=raw)
            assert (error_of(reply, 400)["code"], error_of(reply, 400)["param"]) == (code, param)
    requests = fake.stats()["requests"]
    assert isinstance(requests, dict) and set(requests) == {"demo-embed"}  # the query was embedded, no model asked


# --- job and stream ids ------------------------------------------------------------------------------------


def submit(gateway: Gateway, raw: str, **body: Any) -> dict[str, Any]:
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": "hello there", **body}, key=raw)
    assert reply.status == 202, reply.text
    return dict(reply.json())


def ws_url(gateway: Gateway, path: str) -> str:
    return gateway.url.replace("http://", "ws://") + path


def ws_close_code(gateway: Gateway, path: str, key: str | None) -> int | None:
    """The close code the server ends a connection to ``path`` with, before sending any message."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    with (
        connect(ws_url(gateway, path), additional_headers=headers, open_timeout=10) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


MALFORMED_IDS = ["not-a-uuid", "x" * 300, quote("ünïcödé", safe=""), "%00", "..%2F..%2Fetc"]


def test_unknown_malformed_and_other_keys_jobs_are_404_everywhere(gateway: Gateway, staff: str) -> None:
    _, owner = apikey_create(name="owner")
    _, other = apikey_create(name="other")
    job = submit(gateway, owner, max_tokens=2)
    not_found = {"message": "No such job.", "type": "not_found_error", "code": "job_not_found", "param": None}
    no_stream = {"message": "No such stream.", "type": "not_found_error", "code": "stream_not_found", "param": None}
    unknown_job = f"/api/v1/jobs/{uuid.uuid4()}"
    unknown_session = "/api/v1/stream/" + "A" * 32

    for method in ("GET", "DELETE"):
        assert error_of(call(method, gateway.url + unknown_job, key=owner), 404) == not_found
        assert error_of(call(method, gateway.url + job["status_url"], key=other), 404) == not_found
        for malformed in MALFORMED_IDS:
            error = error_of(call(method, f"{gateway.url}/api/v1/jobs/{malformed}", key=owner), 404)
            assert (error["type"], error["code"]) == ("not_found_error", "not_found"), malformed
    assert error_of(call("GET", gateway.url + unknown_session, key=owner), 404) == no_stream
    assert error_of(call("GET", gateway.url + job["stream_url"], key=other), 404) == no_stream
    for malformed in MALFORMED_IDS:
        error = error_of(call("GET", f"{gateway.url}/api/v1/stream/{malformed}", key=owner), 404)
        assert error["type"] == "not_found_error", malformed

    # WebSocket: the same answer for a stream that does not exist and one of another key (4404), and 4401
    # without a valid key.
    assert ws_close_code(gateway, job["ws_url"], other) == 4404
    assert ws_close_code(gateway, "/ws/v1/stream/" + "A" * 32 + "/", owner) == 4404
    for malformed in MALFORMED_IDS:
        assert ws_close_code(gateway, f"/ws/v1/stream/{malformed}/", owner) == 4404, malformed
    assert ws_close_code(gateway, job["ws_url"], None) == 4401
    assert ws_close_code(gateway, job["ws_url"], "spg-not-a-real-key") == 4401
    for path in ("/ws/v1/stream/", "/ws/v1/nothing-here/", "/ws/"):
        assert ws_close_code(gateway, path, owner) == 4404, path

    # The owner and staff still read it.
    assert call("GET", gateway.url + job["status_url"], key=owner).status == 200
    assert call("GET", gateway.url + job["status_url"], key=staff).status == 200


# --- WebSocket clients that send garbage ------------------------------------------------------------------


def recv_json(ws: ClientConnection) -> dict[str, Any]:
    message = ws.recv(timeout=30)
    assert isinstance(message, str)
    result: dict[str, Any] = json.loads(message)
    return result


def test_garbage_sent_on_the_websocket_is_ignored_and_the_relay_goes_on(
    gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"tps": 10}})
    job = submit(gateway, raw, max_tokens=10)
    headers = {"Authorization": f"Bearer {raw}"}
    messages: list[dict[str, Any]] = []
    with connect(ws_url(gateway, job["ws_url"]), additional_headers=headers, open_timeout=10, max_size=None) as ws:
        messages.append(recv_json(ws))
        for garbage in ("{not json", '{"type": "cancel"}', "", b"\x00\xff binary", "x" * (1024 * 1024)):
            ws.send(garbage)
            messages.append(recv_json(ws))  # the relay still answers after each
        while messages[-1]["type"] not in ("complete", "error"):
            messages.append(recv_json(ws))
        # The stream has ended: the server closes normally, whatever the client sends after.
        with pytest.raises(ConnectionClosed) as closed:
            ws.send("after the end")
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000

    assert [m["type"] for m in messages] == ["chunk"] * 10 + ["complete"]
    finished = Job.objects.get(pk=job["job_id"])
    assert finished.status == "succeeded"
    assert "".join(m["content"] for m in messages[:-1]) == finished.output
    # A late reader gets the same history.
    with connect(ws_url(gateway, job["ws_url"]), additional_headers=headers, open_timeout=10) as ws:
        replay = [recv_json(ws) for _ in messages]
    assert replay == messages


def test_a_frame_over_the_servers_size_limit_closes_only_that_connection(gateway: Gateway) -> None:
    key, raw = apikey_create(name="k")
    job = Job.objects.create(api_key=key, request={"prompt": "hi"})  # never queued: its stream stays open
    headers = {"Authorization": f"Bearer {raw}"}
    url = ws_url(gateway, f"/ws/v1/stream/{job.session_id}/")
    with (
        connect(url, additional_headers=headers, open_timeout=10, max_size=None) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.send("x" * (16 * 1024 * 1024 + 1))  # uvicorn's default ws_max_size is 16 MiB
        while True:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
    assert call("GET", gateway.url + "/health").status == 200


# --- SSE clients ------------------------------------------------------------------------------------------


def test_a_bogus_last_event_id_is_ignored_and_the_stream_replays_from_the_start(
    gateway: Gateway, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="k")
    job = submit(gateway, raw, max_tokens=4)
    assert wait_until(lambda: Job.objects.get(pk=job["job_id"]).status == "succeeded", timeout=30)
    plain = sse_events(call("GET", gateway.url + job["stream_url"], key=raw))
    assert [e["type"] for e in plain] == ["chunk"] * 4 + ["complete"]
    for bogus in ("garbage", "-1", "99999999999999999999999", "99", "\u00e9t\u00e9".encode().decode("latin-1")):
        reply = call("GET", gateway.url + job["stream_url"], key=raw, headers={"Last-Event-ID": bogus})
        assert reply.status == 200
        assert sse_events(reply) == plain
    # An id the stream gave (a message's sequence number): the stream resumes after it.
    resumed = call("GET", gateway.url + job["stream_url"], key=raw, headers={"Last-Event-ID": "3"})
    assert (resumed.status, sse_events(resumed)) == (200, plain[3:])


def stream_readers() -> int:
    """How many readers hold a connection open to read job streams (a reader that left must not keep one).

    Each reader reads its session's stream on a connection of its own."""
    client = redis.Redis.from_url(settings.REDIS_CACHE_URL)
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    try:
        return sum(1 for c in client.client_list() if (c["cmd"], c["db"]) == ("xread", db))
    finally:
        client.close()


def read_sse_until(sock: socket.socket, count: int) -> bytes:
    received = b""
    while received.count(b"data: ") < count:
        data = sock.recv(65536)
        assert data, received
        received += data
    return received


def publish(session_id: str, *messages: dict[str, Any]) -> None:
    """Publish to a session's stream as a worker does (the job itself is never queued)."""

    async def send() -> None:
        publisher = Publisher(session_id)
        try:
            for message in messages:
                await publisher.publish(message)
        finally:
            await publisher.close()

    asyncio.run(send())


def test_readers_that_leave_mid_stream_are_let_go(gateway: Gateway) -> None:
    key, raw = apikey_create(name="k")
    job = Job.objects.create(api_key=key, request={"prompt": "hi"})
    publish(job.session_id, {"type": "chunk", "content": "one"}, {"type": "chunk", "content": " two"})
    others = stream_readers()  # other tests' streams still open, if any
    parts = urlsplit(gateway.url)
    headers = {"Authorization": f"Bearer {raw}"}

    # Three SSE readers and three WebSocket readers, each holding the stream open after two messages.
    with contextlib.ExitStack() as readers:
        for _ in range(3):
            sock = readers.enter_context(socket.create_connection((parts.hostname, parts.port), timeout=30))
            request = f"GET /api/v1/stream/{job.session_id} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            sock.sendall(f"{request}Authorization: Bearer {raw}\r\n\r\n".encode())
            assert read_sse_until(sock, 2).startswith(b"HTTP/1.1 200 OK")
            ws = readers.enter_context(
                connect(ws_url(gateway, f"/ws/v1/stream/{job.session_id}/"), additional_headers=headers)
            )
            assert [recv_json(ws)["type"], recv_json(ws)["type"]] == ["chunk", "chunk"]
        assert wait_until(lambda: stream_readers() == others + 6, timeout=10)
    # They left without a word: each one's connection to the stream is closed.
    assert wait_until(lambda: stream_readers() == others, timeout=10)

    publish(job.session_id, {"type": "complete", "meta": {}})
    events = sse_events(call("GET", f"{gateway.url}/api/v1/stream/{job.session_id}", key=raw))
    assert events == [
        {"type": "chunk", "content": "one"},
        {"type": "chunk", "content": " two"},
        {"type": "complete", "meta": {}},
    ]
    assert stream_readers() == others
