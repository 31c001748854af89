"""Every route, found by walking the URL confs (HTTP and WebSocket), so a new route is covered as it is added:
ids that cannot be ids are a 404 (a WebSocket is closed with 4404), and JSON nested too deeply is a 400, over
real HTTP and WebSocket against a running gateway whose log must hold no error afterwards.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.regex_helper import normalize
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts.services import apikey_create
from spignosapi.api.errors import is_api_path
from spignosapi.api.middleware import MAX_PATH_LENGTH
from spignosapi.websocket_urls import websocket_urlpatterns
from tests.fixtures import Gateway
from tests.http import Reply, call

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(frozen=True)
class Route:
    """A URL pattern with the patterns that include it: ``template`` is its path with ``%(param)s`` slots."""

    template: str
    params: tuple[str, ...]
    chain: tuple[URLPattern | URLResolver, ...]

    def matches(self, path: str) -> bool:
        """Does ``path`` (no leading slash) resolve to this route, level by level as Django's resolver does?"""
        remaining = path
        for level in self.chain:
            match = level.pattern.match(remaining)
            if match is None:
                return False
            remaining = match[0]
        return True

    def path(self, values: dict[str, str]) -> str:
        return "/" + self.template % values


def routes_of(patterns: Sequence[URLPattern | URLResolver], parents: tuple[Any, ...] = ()) -> Iterator[Route]:
    """Every endpoint under ``patterns``; ``parents`` are the (template, params, pattern) of the includes above."""
    for pattern in patterns:
        # Django's own reverse() turns each pattern into a format string this way.
        template, params = normalize(pattern.pattern.regex.pattern)[0]
        levels = (*parents, (template, tuple(params), pattern))
        if isinstance(pattern, URLResolver):
            yield from routes_of(pattern.url_patterns, levels)
        else:
            yield Route(
                "".join(t for t, _, _ in levels),
                tuple(param for _, names, _ in levels for param in names),
                tuple(level for _, _, level in levels),
            )


HTTP_ROUTES = [route for route in routes_of(get_resolver().url_patterns) if route.params]
WEBSOCKET_ROUTES = [route for route in routes_of(websocket_urlpatterns) if route.params]
# Values some id of the seeded platform takes (each route's parameters get the first that its converter takes).
SAMPLES = ["demo/demo-fast", "code", "routing", "1", str(uuid.uuid4()), "A" * 32, "spg-AbCd-123"]
# Ids no route may take: NUL and other control characters (C0, DEL, C1), escapes that are not UTF-8 (an
# invalid byte, an overlong slash, an encoded surrogate, a cut sequence), and a path longer than any route's.
IMPOSSIBLE_IDS = [
    "%00", "a%00b", "%01", "%09", "%0A", "%0D", "%1F", "%7F", "%C2%85",
    "%FF", "%C0%AF", "%ED%A0%80", "%E2%82", "x" * (MAX_PATH_LENGTH + 1),
]  # fmt: skip
# An id longer than its column (every id of the API has a converter bound by its model field, or a uuid).
TOO_LONG_FOR_ITS_COLUMN = "x" * 300
API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
NOT_FOUND = {"message": "Not found.", "type": "not_found_error", "code": "not_found", "param": None}


def valid_values(route: Route) -> dict[str, str]:
    """Sample values for every parameter of ``route`` with which its path resolves to it."""
    for values in itertools.product(SAMPLES, repeat=len(route.params)):
        filled = dict(zip(route.params, values, strict=True))
        if route.matches(route.path(filled)[1:]):
            return filled
    raise AssertionError(f"no sample value resolves to {route.template}: add one to SAMPLES")


def test_the_walk_finds_the_routes_with_ids() -> None:
    templates = {route.template for route in HTTP_ROUTES}
    assert {
        "api/v1/jobs/%(job_id)s",
        "api/v1/stream/%(session_id)s",
        "api/v1/routing/categories/%(name)s",
        "api/v1/keys/%(prefix)s",
        "api/v1/keys/%(prefix)s/rotate",
        "api/v1/teams/%(name)s",
        "api/v1/routing/aliases/%(name)s",
        "api/v1/routing/circuit-breakers/%(model)s/reset",
        "api/v1/embeddings/batches/%(batch_id)s",
        "api/v1/rag/collections/%(name)s",
        "api/v1/rag/collections/%(name)s/documents",
        "v1/models/%(model)s",
        "v1/responses/%(response_id)s",
        "admin/routing/provider/%(object_id)s/change/",
        "admin/%(app_label)s/",
    } <= templates
    assert [route.template for route in WEBSOCKET_ROUTES] == ["ws/v1/stream/%(session_id)s/"]
    for route in [*HTTP_ROUTES, *WEBSOCKET_ROUTES]:
        valid_values(route)  # each one is reachable with the samples


@pytest.fixture
def gateway(logged_gateway: Gateway) -> Gateway:
    """The module's own server: after each test its log must hold no error."""
    return logged_gateway


@pytest.fixture
def staff(gateway: Gateway) -> str:
    return apikey_create(name="staff", is_staff=True)[1]


def not_found_problem(reply: Reply, method: str, path: str) -> str | None:
    """What is wrong with ``reply`` as the 404 for ``path`` (the API's envelope, else the 404 page), if anything."""
    where = f"{method} {path[:100]}: {reply.status} {reply.text[:200]}"
    if reply.status != 404:
        return where
    if is_api_path(path):
        json_reply = reply.headers["content-type"].startswith("application/json")
        return None if json_reply and reply.json() == {"error": NOT_FOUND} else where
    return None if reply.headers["content-type"].startswith("text/html") else where


def bad_paths(route: Route, ids: Sequence[str]) -> Iterator[str]:
    """The route's path with each parameter in turn set to each of ``ids`` (the others valid)."""
    valid = valid_values(route)
    for param, bad in itertools.product(route.params, ids):
        yield route.path({**valid, param: bad})


def test_an_impossible_id_is_a_404_on_every_route_and_method(gateway: Gateway, staff: str) -> None:
    problems = []
    for route in HTTP_ROUTES:
        methods = API_METHODS if is_api_path("/" + route.template) else ["GET", "POST"]
        for path, method in itertools.product(bad_paths(route, IMPOSSIBLE_IDS), methods):
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            problems.append(not_found_problem(call(method, gateway.url + path, raw=body, key=staff), method, path))
    assert [problem for problem in problems if problem] == []
    assert len(problems) > 1000  # (every route was asked)


def test_an_id_longer_than_its_column_is_a_404_at_every_api_route(gateway: Gateway, staff: str) -> None:
    # Before the converters, a collection name like this one reached PostgreSQL on POST …/documents: a 500.
    problems = []
    for route in HTTP_ROUTES:
        if not is_api_path("/" + route.template):
            continue
        for path, method in itertools.product(bad_paths(route, [TOO_LONG_FOR_ITS_COLUMN]), API_METHODS):
            body = b'{"documents": [{"id": "d", "text": "hello"}]}' if method in ("POST", "PUT", "PATCH") else None
            problems.append(not_found_problem(call(method, gateway.url + path, raw=body, key=staff), method, path))
    assert [problem for problem in problems if problem] == []
    # The API's seventeen ids: sixteen routes, a document's has two.
    assert len(problems) == 17 * len(API_METHODS)


def ws_close_code(gateway: Gateway, path: str, key: str) -> int:
    """The close code the server ends a connection to ``path`` with, before sending any message."""
    url = gateway.url.replace("http://", "ws://") + path
    with (
        connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_an_impossible_id_closes_every_websocket_route_with_4404(gateway: Gateway, staff: str) -> None:
    for route in WEBSOCKET_ROUTES:
        for path in bad_paths(route, [*IMPOSSIBLE_IDS, TOO_LONG_FOR_ITS_COLUMN]):
            assert ws_close_code(gateway, path, staff) == 4404, path[:120]


# --- JSON nested too deeply -------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A JSON object whose containers nest ``depth`` levels (the object itself is the first)."""
    inner = depth - 1
    return b'{"prompt": "hello", "max_tokens": 2, "extra": ' + b"[" * inner + b"]" * inner + b"}"


TOO_DEEP = {
    "message": f"JSON parse error - nested deeper than {settings.JSON_MAX_DEPTH} levels.",
    "type": "invalid_request_error",
    "code": "invalid_json",
    "param": None,
}
# The POST doors that read a JSON body (tests/test_bad_input.py's list): the walk must find every one.
JSON_DOORS = {
    "/api/v1/generate",
    "/api/v1/generate/async",
    "/v1/chat/completions",
    "/chat/completions",
    "/v1/responses",
    "/api/v1/embeddings",
    "/v1/embeddings",
    "/api/v1/embeddings/batches",
    "/api/v1/rag",
    "/api/v1/rag/collections/code/documents",
    "/api/v1/routing/categories",
    "/api/v1/routing/aliases",
    "/api/v1/routing/model-mapping",
    "/api/v1/monitoring/refresh",
    "/v1/messages",
    "/v1/messages/count_tokens",
}
# The Anthropic-compatible doors answer in Anthropic's error envelope (routing/anthropic_api.py).
ANTHROPIC_DOORS = {"/v1/messages", "/v1/messages/count_tokens"}


def every_api_path() -> list[str]:
    return [
        path for route in routes_of(get_resolver().url_patterns) if is_api_path(path := route.path(valid_values(route)))
    ]


@pytest.mark.parametrize("depth", [settings.JSON_MAX_DEPTH + 1, 950, 100_000], ids=lambda depth: f"depth-{depth}")
def test_json_nested_too_deeply_is_a_400_at_every_route_that_reads_json(
    gateway: Gateway, staff: str, depth: int
) -> None:
    body = nested(depth)
    assert len(body) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # refused for its depth, not its size
    reading_json = set()
    for path in every_api_path():
        broken = call("POST", gateway.url + path, raw=b"{", key=staff)
        deep = call("POST", gateway.url + path, raw=body, key=staff)
        if path in ANTHROPIC_DOORS:  # Anthropic's envelope: no code, the message says it
            assert broken.status == 400 and broken.json()["error"]["message"].startswith("JSON parse error"), path
            reading_json.add(path)
            anthropic_error = {"type": "invalid_request_error", "message": TOO_DEEP["message"]}
            assert (deep.status, deep.json()["error"]) == (400, anthropic_error), path
        elif broken.status == 400 and broken.json()["error"]["code"] == "invalid_json":
            reading_json.add(path)
            assert (deep.status, deep.json()) == (400, {"error": TOO_DEEP}), path
        else:  # a route that does not read a body ignores this one as it ignores any other
            assert deep.status == broken.status, (path, broken.status, deep.status, deep.text[:300])
    assert reading_json >= JSON_DOORS


def test_json_as_deep_as_the_limit_is_served(gateway: Gateway, staff: str) -> None:
    reply = call("POST", gateway.url + "/api/v1/generate", raw=nested(settings.JSON_MAX_DEPTH), key=staff)
    assert reply.status == 200, reply.text
    assert reply.json()["output"]
