"""Admin: the probe log is read-only, each model's interval and the maintenance flag are edited there."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from monitoring.models import ModelStats, MonitoringSettings
from monitoring.selectors import platform_status
from tests.fixtures import Fake

from .factories import demo, make_probe

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_monitoring_page_renders_and_probes_are_read_only(admin_client: Client, monitored: Fake) -> None:
    probe = make_probe(demo("demo-fast"), timezone.now(), last=True)
    for page in ("probe", "rollup", "modelstats", "monitoringsettings"):
        assert admin_client.get(f"/admin/monitoring/{page}/").status_code == 200, page
    assert admin_client.get(f"/admin/monitoring/probe/{probe.pk}/change/").status_code == 200
    assert admin_client.get("/admin/monitoring/probe/add/").status_code == 403
    assert admin_client.get("/admin/django_celery_beat/periodictask/").status_code == 200


def test_an_admin_sets_a_models_interval_and_the_maintenance_flag(admin_client: Client, monitored: Fake) -> None:
    stats = ModelStats.objects.get(model=demo("demo-smart"))
    reply = admin_client.post(
        f"/admin/monitoring/modelstats/{stats.pk}/change/", {"model": stats.model_id, "probe_interval_s": 300}
    )
    assert reply.status_code == 302, reply.content
    assert ModelStats.objects.get(pk=stats.pk).probe_interval_s == 300

    reply = admin_client.post(
        "/admin/monitoring/monitoringsettings/1/change/",
        {"maintenance": "on", "maintenance_message": "Back at 10:00 UTC."},
    )
    assert reply.status_code == 302, reply.content
    assert MonitoringSettings.objects.count() == 1
    assert (platform_status()["status"], platform_status()["message"]) == ("maintenance", "Back at 10:00 UTC.")
