"""A real beat process sends the probe task from its database schedule; a real worker stores the probes."""

from __future__ import annotations

import subprocess

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from monitoring.models import ModelStats, Probe
from tests.fixtures import Fake
from tests.helpers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_beat_schedules_probes_that_the_worker_stores(
    monitored: Fake, celery_worker: subprocess.Popen[bytes], celery_beat: subprocess.Popen[bytes]
) -> None:
    monitored.configure(**{"demo-fast": {"tokens": 3}, "demo-smart": {"tokens": 5}})
    # The seeded tick is a minute; an admin (here, the test) makes it a second. Beat sees the edit.
    task = PeriodicTask.objects.get(name="monitoring: probe models")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    task.expire_seconds = None
    task.save()

    assert wait_until(lambda: Probe.objects.count() >= 2, timeout=60), "beat did not get the models probed"

    probes = {p.model.name: p for p in Probe.objects.select_related("model")}
    assert set(probes) == {"demo-fast", "demo-smart"}
    assert [(p.ok, p.status, p.completion_tokens) for p in (probes["demo-fast"], probes["demo-smart"])] == [
        (True, "smooth", 3),
        (True, "smooth", 5),
    ]
    assert {s.model.name: s.last_probe_id for s in ModelStats.objects.select_related("model")} == {
        name: probe.pk for name, probe in probes.items()
    }
    task.refresh_from_db()
    assert task.total_run_count >= 1 and task.last_run_at is not None
