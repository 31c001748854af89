"""Hostile input over real HTTP: every front door answers a clear 4xx (or serves the request), never a 500,
and stores nothing broken. Unicode edge cases, NUL characters, absurd numbers, wrong shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accounts.services import apikey_create
from tests.fixtures import Fake, Gateway
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)

LONE_SURROGATE = "\ud800"  # valid in a JSON string, not encodable as UTF-8
NUL = "\u0000"  # valid in JSON, refused by PostgreSQL text and jsonb
EDGE_TEXTS = [
    "zero\u200bwidth and \u202eright-to-left override",
    "emoji 👩‍👩‍👧‍👦 family and flag 🇫🇷",
    "combining e\u0301\u0301\u0301 marks",
    "\ufeffbyte order mark",
]


@pytest.fixture
def raw(gateway: Gateway) -> str:
    return apikey_create(name="k", is_staff=True)[1]


def post(gateway: Gateway, raw: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    # json.dumps escapes the lone surrogate as \ud800, exactly as a client library would send it.
    reply = call("POST", gateway.url + path, raw=json.dumps(body).encode(), key=raw, timeout=60)
    assert reply.headers["content-type"].startswith(("application/json", "text/event-stream")), reply.text
    return reply.status, (reply.json() if reply.headers["content-type"].startswith("application/json") else {})


def text_bodies(text: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/api/v1/generate", {"prompt": text, "max_tokens": 4}),
        ("/api/v1/generate", {"prompt": "hi", "system": text, "max_tokens": 4}),
        ("/api/v1/generate/async", {"prompt": text, "max_tokens": 4}),
        ("/v1/chat/completions", {"model": "router", "messages": [{"role": "user", "content": text}], "max_tokens": 4}),
        ("/api/v1/embeddings", {"input": [text], "model": "demo/demo-embed"}),
        ("/v1/embeddings", {"input": text, "model": "demo/demo-embed"}),
        ("/api/v1/embeddings/batches", {"input": [text], "model": "demo/demo-embed"}),
        ("/api/v1/rag/collections/edge/documents", {"documents": [{"id": "d", "title": text, "text": text}]}),
        ("/api/v1/routing/categories", {"name": "edge", "keywords": [text], "examples": [text]}),
    ]


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_unusual_but_valid_unicode_is_served(gateway: Gateway, fake: Fake, raw: str, text: str) -> None:
    for path, body in text_bodies(text):
        status, _ = post(gateway, raw, path, body)
        assert status in (200, 201, 202), (path, status)


@pytest.mark.parametrize("bad", [LONE_SURROGATE, NUL], ids=["lone-surrogate", "nul"])
def test_text_that_cannot_be_stored_or_encoded_is_a_400(gateway: Gateway, fake: Fake, raw: str, bad: str) -> None:
    for path, body in text_bodies(f"before {bad} after"):
        status, answer = post(gateway, raw, path, body)
        assert status == 400, (path, status, answer)
        assert (answer["error"]["type"], answer["error"]["code"]) == ("invalid_request_error", "invalid_text"), path
    assert fake.stats()["requests"] == {}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "hi", "max_tokens": -1}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 10**30}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 1.5}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": "many"}, "max_tokens"),
        ({"prompt": "hi", "temperature": 1e309}, None),  # json.dumps writes Infinity: invalid JSON
        ({"prompt": "hi", "temperature": -0.1}, "temperature"),
        ({"prompt": "hi", "temperature": "NaN"}, "temperature"),
        ({"prompt": "hi", "top_p": 2}, "top_p"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": {"text": "hi"}}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "hi", "stream": "yes please"}, "stream"),
        ({"prompt": "hi", "category": "../etc/passwd"}, "category"),
    ],
)
def test_absurd_numbers_and_wrong_types_are_named(
    gateway: Gateway, fake: Fake, raw: str, body: dict[str, Any], param: str | None
) -> None:
    status, answer = post(gateway, raw, "/api/v1/generate", body)
    assert status == 400, answer
    assert answer["error"]["param"] == param, answer
    assert fake.stats()["requests"] == {}


@pytest.mark.parametrize("payload", [b"[1, 2, 3]", b'"just a string"', b"null", b"{", b"\xff\xfe", b""])
def test_bodies_that_are_not_a_json_object_are_refused(gateway: Gateway, raw: str, payload: bytes) -> None:
    for path in ("/api/v1/generate", "/v1/chat/completions", "/api/v1/embeddings", "/api/v1/rag"):
        reply = call("POST", gateway.url + path, raw=payload, key=raw)
        assert reply.status == 400, (path, payload, reply.text)
        assert reply.json()["error"]["type"] == "invalid_request_error"
