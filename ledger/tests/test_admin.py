"""The ledger in the admin: usage records are listed, filtered and viewed, never added, changed or deleted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ledger.models import UsageRecord

pytestmark = pytest.mark.django_db


def usage(request_id: str, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": request_id,
        "endpoint": "generate",
        "category": "code",
        "route_mode": "keywords",
        "model": "demo/demo-smart",
        "provider": "demo",
        "status": "ok",
        "created_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    }
    values.update(fields)
    return UsageRecord.objects.create(**values)


@pytest.fixture
def usage_records(db: None) -> None:
    usage("adm-1")
    usage("adm-2", status="error", error_code="all_models_failed", model="", provider="")
    usage("adm-3", endpoint="chat.completions", stream=True, model="demo/demo-fast")
    usage("adm-4", status="error", endpoint="chat.completions", category="conversation")


def listed(admin_client: Client, query: str) -> list[str]:
    response = admin_client.get("/admin/ledger/usagerecord/?q=adm-&" + query)
    assert response.status_code == 200, query
    return sorted(r.request_id for r in response.context["cl"].result_list)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["adm-1", "adm-2", "adm-3", "adm-4"]),
        ("status__exact=error", ["adm-2", "adm-4"]),
        ("endpoint__exact=chat.completions", ["adm-3", "adm-4"]),
        ("status__exact=error&endpoint__exact=generate", ["adm-2"]),
        ("stream__exact=1", ["adm-3"]),
        ("category__exact=conversation", ["adm-4"]),
        ("provider__exact=demo", ["adm-1", "adm-3", "adm-4"]),
        ("created_at__year=2026&created_at__month=3", ["adm-1", "adm-2", "adm-3", "adm-4"]),
        ("created_at__year=2025", []),
    ],
)
def test_usage_records_can_be_filtered(
    admin_client: Client, usage_records: None, query: str, expected: list[str]
) -> None:
    assert listed(admin_client, query) == expected


def test_usage_records_are_listed_without_a_query_per_row(admin_client: Client, usage_records: None) -> None:
    from django.db import connection

    with CaptureQueriesContext(connection) as few:
        admin_client.get("/admin/ledger/usagerecord/?q=adm-1")
    with CaptureQueriesContext(connection) as many:
        admin_client.get("/admin/ledger/usagerecord/?q=adm-")
    assert len(many) == len(few)


def test_usage_records_cannot_be_added_changed_or_deleted(admin_client: Client, usage_records: None) -> None:
    record = UsageRecord.objects.get(request_id="adm-1")
    url = f"/admin/ledger/usagerecord/{record.pk}/change/"
    assert admin_client.get("/admin/ledger/usagerecord/add/").status_code == 403
    page = admin_client.get(url)
    assert page.status_code == 200  # viewing is allowed
    assert page.context["has_change_permission"] is False
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(url, {"status": "ok", "model": "tampered"}).status_code == 403
    assert admin_client.post(f"/admin/ledger/usagerecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    record.refresh_from_db()
    assert record.model == "demo/demo-smart"
    changelist = admin_client.get("/admin/ledger/usagerecord/")
    assert "delete_selected" not in changelist.content.decode()
