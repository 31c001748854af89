"""The default beat schedules (seeded once, admin edits kept) and which models are due for a probe."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from monitoring.models import ModelStats
from monitoring.seed import seed_defaults
from monitoring.services import models_due, probe_due_models
from tests.fixtures import Fake

from .factories import NOW, add_model, demo, make_probe

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_seeds_the_schedules_once_and_keeps_admin_edits(monitored: Fake) -> None:
    tasks = {t.name: t for t in PeriodicTask.objects.filter(name__startswith="monitoring: ")}
    probe, stats, prune = (tasks[f"monitoring: {n}"] for n in ("probe models", "refresh stats", "prune"))
    assert (probe.task, probe.queue, probe.interval.every, probe.interval.period, probe.expire_seconds) == (
        "monitoring.probe_due",
        "low",
        60,
        "seconds",
        60,
    )
    assert (stats.task, stats.queue, stats.interval.every) == ("monitoring.refresh_stats", "low", 900)
    assert (prune.task, prune.crontab.minute, prune.crontab.hour) == ("monitoring.prune", "17", "3")
    assert sorted(s.model.name for s in ModelStats.objects.all()) == ["demo-fast", "demo-smart"]
    assert {s.probe_interval_s for s in ModelStats.objects.all()} == {600}

    ModelStats.objects.filter(model=demo("demo-fast")).update(probe_interval_s=120)
    probe.enabled = False
    probe.save()
    out = StringIO()
    call_command("seed_defaults", stdout=out)

    assert "monitoring: already seeded" in out.getvalue()
    assert PeriodicTask.objects.get(name="monitoring: probe models").enabled is False
    assert ModelStats.objects.get(model=demo("demo-fast")).probe_interval_s == 120
    assert PeriodicTask.objects.filter(name__startswith="monitoring: ").count() == 3


def test_a_model_is_due_once_its_own_interval_has_passed(monitored: Fake) -> None:
    fast, smart = demo("demo-fast"), demo("demo-smart")
    add_model("quiet", monitor=False)
    fresh = add_model("fresh")  # never probed: due at once
    ModelStats.objects.filter(model=smart).update(probe_interval_s=120)
    make_probe(fast, NOW, last=True)
    make_probe(smart, NOW, last=True)

    # By model id. Half a tick (30 s) of slack: a 600 s model is due from 570 s on, a 120 s one from 90 s on.
    assert models_due(now=NOW + timedelta(seconds=89)) == [fresh.pk]
    assert models_due(now=NOW + timedelta(seconds=90)) == [smart.pk, fresh.pk]
    assert models_due(now=NOW + timedelta(seconds=569)) == [smart.pk, fresh.pk]
    assert models_due(now=NOW + timedelta(seconds=570)) == [fast.pk, smart.pk, fresh.pk]


def test_the_scheduled_run_probes_only_the_due_models(monitored: Fake) -> None:
    fast = demo("demo-fast")
    make_probe(fast, NOW - timedelta(seconds=100), last=True)

    rows = probe_due_models(now=lambda: NOW)

    # A demo model is probed for a plain answer, a tool call and a JSON-schema answer.
    assert [(row.model.name, row.kind) for row in rows] == [
        ("demo-smart", "stream"),
        ("demo-smart", "tool_call"),
        ("demo-smart", "structured_output"),
    ]
    assert monitored.stats()["requests"] == {"demo-smart": 3}
    assert probe_due_models(now=lambda: NOW + timedelta(seconds=60)) == []


def test_a_run_that_overlaps_another_does_not_probe_what_the_other_just_probed(monitored: Fake) -> None:
    smart = demo("demo-smart")
    calls = 0

    def now() -> datetime:
        # Both models are due when this run first looks; by the time it has claimed them, another run
        # (a tick of a restarted beat) has stored its probe of demo-smart and let go of it.
        nonlocal calls
        calls += 1
        if calls == 2:
            make_probe(smart, NOW, last=True)
        return NOW

    rows = probe_due_models(now=now)

    assert {row.model.name for row in rows} == {"demo-fast"}
    assert monitored.stats()["requests"] == {"demo-fast": 3}


def test_seeding_twice_changes_nothing(monitored: Fake) -> None:
    assert seed_defaults() == "already seeded"
