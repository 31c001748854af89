"""Reading the audit log back in tests: the entries as ``GET /api/v1/audit`` shows them, and the actors."""

from __future__ import annotations

import json
from typing import Any

from auditlog.models import LogEntry
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey
from tests.helpers import admin_form_data

# How an entry names the admin user of pytest-django's ``admin_client``.
ADMIN_ACTOR = {"type": "user", "name": "admin", "prefix": None, "user": "admin"}


def ops_actor(key: ApiKey) -> dict[str, Any]:
    """How an entry names the ops key of the ``ops`` fixture: its name and prefix, and its owner."""
    return {"type": "key", "name": "ops", "prefix": key.prefix, "user": "alice"}


def audit(client: APIClient | Client, **params: Any) -> list[dict[str, Any]]:
    reply = client.get("/api/v1/audit", params)
    assert reply.status_code == 200, reply.content
    results: list[dict[str, Any]] = reply.json()["results"]
    return results


def log(client: APIClient | Client, **params: Any) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(action, object_type, object_repr, changes) of each entry, oldest first."""
    rows = audit(client, page_size=500, **params)
    return [(e["action"], e["object_type"], e["object_repr"], e["changes"]) for e in reversed(rows)]


def actors(client: APIClient | Client) -> list[dict[str, Any]]:
    return [e["actor"] for e in audit(client, page_size=500)]


def stored_entries() -> str:
    """Every stored entry, every column, as one string: what a secret must never be found in."""
    return json.dumps(list(LogEntry.objects.values()), default=str)


def admin_save(admin_client: Client, url: str, **changes: Any) -> None:
    """Submit an admin add or change page as rendered, with ``changes``; it must save (a redirect)."""
    data = admin_form_data(admin_client.get(url))
    data.update(changes)
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context and response.context["errors"]
