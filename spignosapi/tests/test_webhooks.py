"""Webhooks: delivered by the real worker to a real receiver on loopback, signed, tried again on failure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import transaction
from pytest_django import Settings

from spignosapi import webhooks
from tests.helpers import TEST_WEBHOOK_SECRET, wait_until


@dataclass
class Receiver:
    url: str
    statuses: list[int]  # answered in turn; the last one for every later try
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="", statuses=[200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = state.statuses.pop(0) if len(state.statuses) > 1 else state.statuses[0]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=t0ps3cret"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _expected_signature(headers: dict[str, str], body: bytes) -> str:
    key = base64.b64decode(TEST_WEBHOOK_SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@pytest.mark.django_db(transaction=True)
def test_an_event_is_delivered_after_commit_and_signed(
    celery_worker: subprocess.Popen[bytes], receiver: Receiver, settings: Settings
) -> None:
    settings.WEBHOOK_URLS = [receiver.url]
    settings.WEBHOOK_SECRET = TEST_WEBHOOK_SECRET
    with transaction.atomic():
        delivery_id = webhooks.notify("incident.opened", {"model": "demo/fast", "incident": 7})
        assert receiver.received == []  # nothing leaves before the change is committed

    assert wait_until(lambda: len(receiver.received) == 1, timeout=20)
    headers, body = receiver.received[0]
    assert headers["webhook-id"] == delivery_id
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"] == _expected_signature(headers, body)
    payload = json.loads(body)
    assert payload["type"] == "incident.opened"
    assert payload["data"] == {"model": "demo/fast", "incident": 7}


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_announces_nothing(receiver: Receiver, settings: Settings) -> None:
    settings.WEBHOOK_URLS = [receiver.url]
    with pytest.raises(RuntimeError), transaction.atomic():
        webhooks.notify("incident.opened", {"model": "demo/fast"})
        raise RuntimeError("rolled back")
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_a_failed_delivery_is_tried_again_with_the_same_id(
    celery_worker: subprocess.Popen[bytes], receiver: Receiver, settings: Settings
) -> None:
    receiver.statuses = [503, 200]
    settings.WEBHOOK_URLS = [receiver.url]
    delivery_id = webhooks.notify("budget.threshold", {"budget": 3})

    assert wait_until(lambda: len(receiver.received) == 2, timeout=30)
    assert [headers["webhook-id"] for headers, _ in receiver.received] == [delivery_id, delivery_id]
    assert receiver.received[0][1] == receiver.received[1][1]  # the same body, signed again for its own try
    for headers, body in receiver.received:
        assert headers["webhook-signature"] == _expected_signature(headers, body)


def test_a_refusing_receiver_is_not_tried_again(receiver: Receiver, settings: Settings) -> None:
    """A 4xx other than 408/429 is the receiver's answer: the task gives up at once (run in place here)."""
    receiver.statuses = [410]
    webhooks.deliver.apply(args=[receiver.url, "msg_1", '{"type":"x"}'])
    assert len(receiver.received) == 1


def test_no_url_configured_sends_nothing(settings: Settings) -> None:
    settings.WEBHOOK_URLS = []
    assert webhooks.notify("incident.opened", {}) is None


def test_a_failing_receiver_is_retried_then_given_up(
    receiver: Receiver, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Run in place (eagerly, so the retries follow at once): 1 + WEBHOOK_MAX_RETRIES tries, then one warning
    that names the host but not the URL's token."""
    settings.WEBHOOK_MAX_RETRIES = 2
    receiver.statuses = [503]
    webhooks.deliver.apply(args=[receiver.url, "msg_2", "{}"])
    assert len(receiver.received) == 3
    assert "t0ps3cret" not in caplog.text
    assert "given up after 3 tries (status 503)" in caplog.text


def test_an_unreachable_receiver_counts_as_a_failure() -> None:
    assert webhooks.post("http://127.0.0.1:9/hook", "msg_3", "{}") == 0
