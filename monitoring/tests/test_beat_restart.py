"""Beat restarted, and two beats at once during a rolling restart: no model is probed twice within its interval.

Real processes on a private Redis (broker and cache, so the session's worker takes none of these ticks): one
worker, and beat (database scheduler) ticking every second. Each model is due every ``INTERVAL`` seconds;
a tick probes only the models whose last probe is at least ``INTERVAL - TICK/2`` old (``models_due``),
and claims each one in Redis while it probes it. The probe rows in the database are the record.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from monitoring.models import ModelStats, Probe
from tests.fixtures import Fake, _stop, shared_database_url
from tests.helpers import ROOT, django_env, private_redis, python, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

TICK_S = 1
INTERVAL_S = 4
SLACK_S = TICK_S / 2  # monitoring.services.models_due


def celery(redis_url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = django_env(
        DATABASE_URL=shared_database_url(),
        REDIS_URL=redis_url,
        MONITORING_TICK_S=str(TICK_S),
        SNAPSHOT_CHECK_SECONDS="0",
        BEAT_HEARTBEAT_SECONDS="60",
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [python(), "-m", "celery", "-A", "spignosapi", *args, "--loglevel", "WARNING"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def processes(monitored: Fake, tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    """A private Redis and a worker on it; beats are started by the test (all stopped at the end)."""
    with private_redis() as (redis_url, _):
        log = tmp_path / "celery.log"
        started = [
            celery(
                redis_url,
                log,
                "worker",
                "--queues",
                "high,default,low",
                "--concurrency",
                "2",
                "--hostname",
                "beat-restart@%h",
                "--without-gossip",
                "--without-mingle",
            )
        ]
        try:
            yield redis_url, log, started
        finally:
            for proc in reversed(started):
                _stop(proc)


def beat(redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    return celery(redis_url, log, "beat", "--pidfile", "")


def probe_times() -> dict[str, list[float]]:
    """Each model's streaming probe start times (seconds, oldest first); its other kinds run beside it."""
    times: dict[str, list[float]] = {}
    for probe in Probe.objects.filter(kind="stream").select_related("model").order_by("checked_at"):
        times.setdefault(probe.model.name, []).append(probe.checked_at.timestamp())
    return times


def test_a_restarted_or_doubled_beat_never_probes_a_model_twice_within_its_interval(
    monitored: Fake, processes: tuple[str, Path, list[subprocess.Popen[bytes]]]
) -> None:
    redis_url, log, started = processes
    task = PeriodicTask.objects.get(name="monitoring: probe models")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=TICK_S, period=IntervalSchedule.SECONDS)
    task.expire_seconds = None
    task.save()
    ModelStats.objects.update(probe_interval_s=INTERVAL_S)

    def probed(at_least: int) -> bool:
        counts = [len(t) for t in probe_times().values()]
        return len(counts) == 2 and min(counts) >= at_least

    # One beat, until each model has been probed twice (so its own rhythm is set).
    first = beat(redis_url, log)
    started.append(first)
    assert wait_until(lambda: probed(2), timeout=60), (probe_times(), log.read_text()[-3000:])

    # Restarted: stopped, and a new one started at once (it finds the tick overdue and sends it).
    _stop(first)
    second = beat(redis_url, log)
    started.append(second)
    assert wait_until(lambda: probed(4), timeout=60), log.read_text()[-3000:]

    # A rolling restart: a third beat starts while the second still runs, then the second stops.
    third = beat(redis_url, log)
    started.append(third)
    assert wait_until(lambda: probed(6), timeout=60), log.read_text()[-3000:]
    _stop(second)
    assert wait_until(lambda: probed(7), timeout=60), log.read_text()[-3000:]
    _stop(third)
    time.sleep(0.5)  # a tick already sent finishes

    times = probe_times()
    assert set(times) == {"demo-fast", "demo-smart"}
    for model, starts in times.items():
        gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
        # Never two probes of a model closer than its interval less half a tick...
        assert min(gaps) >= INTERVAL_S - SLACK_S, (model, gaps)
        # ...so within any one interval a model gets at most one probe more than it should.
        assert all(sum(1 for t in starts if start <= t < start + INTERVAL_S) <= 2 for start in starts), (model, gaps)
