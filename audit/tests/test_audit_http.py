"""The audit log behind the ASGI server the platform runs: the actor of a change made over real HTTP (the
request's context reaches the view's thread), and the log read back the same way."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import User

from accounts.services import apikey_create
from tests.fixtures import Gateway
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_change_over_http_names_the_key_that_made_it(gateway: Gateway) -> None:
    owner = User.objects.create_user("bob")
    key, raw = apikey_create(name="deployer", is_staff=True, owner=owner)
    LogEntry.objects.all().delete()

    reply = call(
        "POST",
        gateway.url + "/api/v1/routing/aliases",
        {"name": "gpt-4o", "target": "code"},
        key=raw,
        headers={"X-Request-ID": "change-42"},
    )
    assert reply.status == 201, reply.text
    reset = call("POST", gateway.url + "/api/v1/routing/circuit-breakers/demo/demo-fast/reset", key=raw)
    assert reset.status == 200, reset.text

    listed = call("GET", gateway.url + "/api/v1/audit", key=raw)
    assert listed.status == 200, listed.text
    entries = listed.json()["results"]
    actor = {"type": "key", "name": "deployer", "prefix": key.prefix, "user": "bob"}
    assert [(e["action"], e["object_type"], e["object_repr"], e["actor"]) for e in entries] == [
        ("reset", "circuit_breaker", "demo/demo-fast", actor),
        ("create", "alias", "gpt-4o → code", actor),
    ]
    # An entry carries its request's X-Request-ID as its correlation id.
    assert LogEntry.objects.get(object_repr="gpt-4o → code").cid == "change-42"
