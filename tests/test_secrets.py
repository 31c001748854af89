"""A provider's API key is planted in the environment; an upstream that quotes it back (as some do on a 401)
is called through every front door. The key must appear in no response, no log line, no admin page and no
stored row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from accounts.services import apikey_create
from ledger.buffer import usage_buffer
from routing.models import LLMModel, Provider
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway, _stop, start_gateway
from tests.helpers import wait_until
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-planted-5b1e0c9d4a7f4e2c8d3b6a1f0e9d8c7b"


@pytest.fixture
def leaky(seeded: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gateway, Path]]:
    """A gateway whose provider ``leaky`` reads SECRET from PLANTED_API_KEY, its logs captured at DEBUG."""
    monkeypatch.setenv("PLANTED_API_KEY", SECRET)  # the admin pages below render in this process
    provider = Provider.objects.create(
        name="leaky", kind="openai_compatible", base_url=seeded.url + "/v1", api_key_env="PLANTED_API_KEY"
    )
    LLMModel.objects.create(provider=provider, name="demo-fast", price_in_per_m=1, price_out_per_m=1)
    routing_changed()
    log = tmp_path / "gateway.log"
    server = start_gateway({"PLANTED_API_KEY": SECRET, "LOG_LEVEL": "DEBUG"}, log=log)
    try:
        yield server, log
    finally:
        _stop(server.proc)


def test_the_key_is_never_shown_logged_or_stored(leaky: tuple[Gateway, Path], fake: Fake, admin_client: Client) -> None:
    gateway, log = leaky
    _, staff = apikey_create(name="staff", is_staff=True)
    # First a success (the key reaches the upstream), then the upstream refuses it and quotes it back.
    ok = call("POST", gateway.url + "/api/v1/generate", {"prompt": "hi", "model": "leaky/demo-fast"}, key=staff)
    assert ok.status == 200, ok.text
    assert fake.stats()["requests"] == {"demo-fast": 1}
    fake.configure(**{"demo-fast": {"status": 401}})
    bodies = [ok.text]
    for stream in (False, True):
        generate = call(
            "POST",
            gateway.url + "/api/v1/generate",
            {"prompt": "hi", "model": "leaky/demo-fast", "stream": stream},
            key=staff,
        )
        chat = call(
            "POST",
            gateway.url + "/v1/chat/completions",
            {"model": "leaky/demo-fast", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
            key=staff,
        )
        assert (generate.status, chat.status) == (502, 502), (generate.text, chat.text)
        assert generate.json()["error"]["code"] == "upstream_authentication_failed"
        bodies += [generate.text, chat.text]
    # The upstream did quote it: what we check for is really there to leak.
    assert fake.stats()["requests"] == {"demo-fast": 5}
    for path in ("/api/v1/routing/config", "/v1/models", "/api/v1/routing/circuit-breakers", "/api/v1/status"):
        reply = call("GET", gateway.url + path, key=staff)
        assert reply.status == 200, (path, reply.text)
        bodies.append(reply.text)
    config = call("GET", gateway.url + "/api/v1/routing/config", key=staff).json()
    [shown] = [p for p in config["providers"] if p["name"] == "leaky"]
    assert (shown["kind"], shown["base_url"], shown["has_api_key"]) == ("openai_compatible", fake.url + "/v1", True)
    leaky_pk = Provider.objects.get(name="leaky").pk
    for path in (
        "/admin/routing/provider/",
        f"/admin/routing/provider/{leaky_pk}/change/",
        "/admin/ledger/usagerecord/",
    ):
        page = admin_client.get(path)
        assert page.status_code == 200, path
        bodies.append(page.content.decode())

    for body in bodies:
        assert SECRET not in body and SECRET[:20] not in body
    usage_buffer.flush()
    assert wait_until(lambda: _rows_mentioning("upstream_authentication_failed") > 0, timeout=10)
    assert _rows_mentioning(SECRET[:20]) == 0
    _stop(gateway.proc)  # flushes its logs
    text = log.read_text()
    assert "DEBUG" in text or "debug" in text.lower()  # the server did log, and verbosely
    assert SECRET[:20] not in text


def _rows_mentioning(needle: str) -> int:
    """Rows of the gateway's tables (usage records, breakers) whose text mentions ``needle``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM routing_usagerecord WHERE attempts::text LIKE %s OR error_code LIKE %s)"
            " + (SELECT count(*) FROM routing_circuitbreaker WHERE last_error LIKE %s)",
            [f"%{needle}%"] * 3,
        )
        (count,) = cursor.fetchone()
    return int(count)
