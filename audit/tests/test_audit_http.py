"""The audit log behind the ASGI server the platform runs: the actor of a change made over real HTTP (the
request's context reaches the view's thread), the log read back the same way, and traffic that writes none."""

from __future__ import annotations

from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection, models

from accounts.models import ApiKey
from accounts.services import apikey_create
from budgets.counters import Spend
from budgets.models import MICRO, Budget
from ledger.accounting import account
from llm import count_message_tokens
from routing.selectors import routing_config
from tests.fixtures import Gateway
from tests.helpers import wait_until
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


def row_version(row: models.Model) -> str:
    """PostgreSQL's ``xmin`` of ``row``: it changes with every UPDATE of the row, even one that writes the same
    values (which auditlog would not log)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT xmin::text FROM {row._meta.db_table} WHERE id = %s", [row.pk])
        version: str = cursor.fetchone()[0]
    return version


def test_spending_a_budget_writes_no_entry_and_saves_neither_the_budget_nor_the_key(gateway: Gateway) -> None:
    messages = [{"role": "user", "content": "Say something short"}]
    spent = account(routing_config.get(recheck=True).models["demo/demo-fast"], count_message_tokens(messages), 4)
    most = Spend(spent.cost_usd, spent.energy_wh, spent.co2e_g).micro("usd")
    assert most > 0
    key, raw = apikey_create(name="app")
    # Room for one call at its most, not two: the second is refused.
    budget = Budget.objects.create(
        scope="key", api_key=key, metric="usd", period="day", limit=Decimal(most * 3 // 2) / MICRO, soft_threshold="0.5"
    )
    LogEntry.objects.all().delete()
    versions = (row_version(budget), row_version(key))

    body = {"model": "demo/demo-fast", "messages": messages, "max_tokens": 4}
    first = call("POST", gateway.url + "/v1/chat/completions", body, key=raw)
    assert first.status == 200, first.text
    refused = call("POST", gateway.url + "/v1/chat/completions", body, key=raw)
    assert (refused.status, refused.json()["error"]["code"]) == (429, "budget_exceeded")

    def charged() -> bool:  # the first call booked at its most: past the soft threshold, the alert's path ran too
        me = call("GET", gateway.url + "/api/v1/keys/me", key=raw).json()
        return [(round(b["spent"] * MICRO), b["reserved"]) for b in me["budgets"]] == [(most, 0)]

    assert wait_until(charged)

    assert LogEntry.objects.count() == 0
    assert (row_version(budget), row_version(key)) == versions
    assert ApiKey.objects.get(pk=key.pk).prefix == key.prefix
