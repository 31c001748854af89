"""Admin: an operator reports an incident with its updates, resolves it, and announces a maintenance window."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django import Settings

from monitoring.models import Incident, MaintenanceWindow
from monitoring.selectors import model_states, monitored_rows
from spignosapi.tests.test_webhooks import Receiver, receiver  # noqa: F401 (a fixture)
from tests.fixtures import Fake
from tests.helpers import wait_until

from .factories import demo


@pytest.fixture(autouse=True)
def no_webhooks(settings: Settings) -> None:
    settings.WEBHOOK_URLS = []


def split(moment: str) -> dict[str, str]:
    return {"0": moment[:10], "1": moment[11:]}


def test_the_pages_render(admin_client: Client, monitored_db: None) -> None:
    for page in ("incident", "maintenancewindow"):
        assert admin_client.get(f"/admin/monitoring/{page}/").status_code == 200, page
        assert admin_client.get(f"/admin/monitoring/{page}/add/").status_code == 200, page


def report_form() -> dict[str, object]:
    return {
        "title": "Slow answers",
        "model": demo("demo-fast").pk,
        "cause": "manual",
        **{f"started_at_{k}": v for k, v in split("2026-12-01 09:00:00").items()},
        "updates-TOTAL_FORMS": "1",
        "updates-INITIAL_FORMS": "0",
        **{f"updates-0-created_at_{k}": v for k, v in split("2026-12-01 09:05:00").items()},
        "updates-0-status": "investigating",
        "updates-0-message": "We are looking into it.",
    }


def test_an_operator_reports_an_incident_with_an_update_then_resolves_it(
    admin_client: Client, monitored_db: None
) -> None:
    form = report_form()
    reply = admin_client.post("/admin/monitoring/incident/add/", form)
    assert reply.status_code == 302, reply.content.decode()[-3000:]

    incident = Incident.objects.get()
    assert (incident.title, incident.cause, incident.automatic, incident.resolved_at) == (
        "Slow answers",
        "manual",
        False,
        None,
    )
    assert [(u.status, u.message) for u in incident.updates.all()] == [("investigating", "We are looking into it.")]
    assert incident.updated_at.isoformat() == "2026-12-01T09:05:00+00:00"  # its newest update's time

    update = incident.updates.get()
    form.update(
        {
            **{f"resolved_at_{k}": v for k, v in split("2026-12-01 10:00:00").items()},
            "updates-TOTAL_FORMS": "2",
            "updates-INITIAL_FORMS": "1",
            "updates-0-id": str(update.pk),
            "updates-0-incident": str(incident.pk),
            "updates-1-incident": str(incident.pk),
            **{f"updates-1-created_at_{k}": v for k, v in split("2026-12-01 10:00:00").items()},
            "updates-1-status": "resolved",
            "updates-1-message": "Fixed.",
        }
    )
    reply = admin_client.post(f"/admin/monitoring/incident/{incident.pk}/change/", form)
    assert reply.status_code == 302, reply.content.decode()[-3000:]
    incident.refresh_from_db()
    assert incident.resolved_at is not None and incident.resolved_at.isoformat() == "2026-12-01T10:00:00+00:00"
    assert [u.status for u in incident.updates.all()] == ["investigating", "resolved"]


def test_a_maintenance_window_from_the_admin_puts_its_models_in_maintenance(
    admin_client: Client, monitored_db: None
) -> None:
    now = timezone.now()
    reply = admin_client.post(
        "/admin/monitoring/maintenancewindow/add/",
        {
            "title": "Provider upgrade",
            "message": "Up to ten minutes.",
            **{f"starts_at_{k}": v for k, v in split(f"{now - timedelta(minutes=5):%Y-%m-%d %H:%M:%S}").items()},
            **{f"ends_at_{k}": v for k, v in split(f"{now + timedelta(hours=1):%Y-%m-%d %H:%M:%S}").items()},
            "affected_models": [demo("demo-fast").pk],
        },
    )
    assert reply.status_code == 302, reply.content.decode()[-3000:]
    assert MaintenanceWindow.objects.get().title == "Provider upgrade"

    rows = monitored_rows()
    states = model_states(rows, now=now)
    assert {row.model_id: states[row.model.pk].state.value for row in rows} == {
        "demo/demo-fast": "maintenance",
        "demo/demo-smart": "unknown",
    }


def test_a_window_that_ends_before_it_starts_is_refused(admin_client: Client, monitored_db: None) -> None:
    reply = admin_client.post(
        "/admin/monitoring/maintenancewindow/add/",
        {
            "title": "Backwards",
            **{f"starts_at_{k}": v for k, v in split("2026-12-02 10:00:00").items()},
            **{f"ends_at_{k}": v for k, v in split("2026-12-02 09:00:00").items()},
        },
    )
    assert reply.status_code == 200  # the form again, with the error
    assert MaintenanceWindow.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_reported_incident_is_announced_with_its_timeline(
    celery_worker: subprocess.Popen[bytes],
    admin_client: Client,
    monitored: Fake,
    receiver: Receiver,  # noqa: F811 (the fixture imported above)
    settings: Settings,
) -> None:
    settings.WEBHOOK_URLS = [receiver.url]
    assert admin_client.post("/admin/monitoring/incident/add/", report_form()).status_code == 302

    assert wait_until(lambda: len(receiver.received) == 1, timeout=30)
    body = json.loads(receiver.received[0][1])
    assert (body["type"], body["data"]["title"], body["data"]["state"]) == ("incident.opened", "Slow answers", "open")
    assert body["data"]["updates"] == [
        {"status": "investigating", "message": "We are looking into it.", "created_at": "2026-12-01T09:05:00Z"}
    ]
