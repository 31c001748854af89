"""Beat's scheduler through a database outage: the scheduler runs in the test process and its database
connection is pointed at a port where nothing listens (every connection refused, as when PostgreSQL is down),
then back. The end-to-end outage (a real beat process, a PostgreSQL cluster stopped) is tests/test_job_outages.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper

from spignosapi.beat import ResilientDatabaseScheduler, wait_for_database
from spignosapi.celery import app
from tests.helpers import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class Database:
    def __init__(self) -> None:
        self.port = connection.settings_dict["PORT"]

    def stop(self) -> None:
        self._reconnect_to(str(free_port()))

    def start(self) -> None:
        self._reconnect_to(self.port)

    def _reconnect_to(self, port: str) -> None:
        # The process's connection pool was opened on the old address: it goes too, and the next connection
        # (or pool) is made from the settings.
        wrapper = connections["default"]
        assert isinstance(wrapper, PostgresWrapper)
        wrapper.close()
        wrapper.close_pool()
        wrapper.settings_dict["PORT"] = port


@pytest.fixture
def database() -> Iterator[Database]:
    db = Database()
    try:
        yield db
    finally:
        db.start()


def beat_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "spignosapi.beat"]


def test_beat_keeps_its_schedule_while_the_database_is_down_and_reads_it_again_after(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = ResilientDatabaseScheduler(app=app)
    names = {"beat-heartbeat", "jobs-sweep", "responses-purge", "celery.backend_cleanup"}
    assert set(scheduler.schedule) == names
    sweep = scheduler.schedule["jobs-sweep"]
    next(sweep)  # beat sent it once: the row in memory remembers when

    database.stop()
    caplog.set_level(logging.WARNING, logger="spignosapi.beat")
    assert scheduler.schedule_changed() is False
    kept = scheduler.all_as_schedule()  # the stock scheduler raised OperationalError here, and beat exited
    assert set(kept) == names
    assert kept["jobs-sweep"].last_run_at == sweep.model.last_run_at
    assert scheduler.schedule_changed() is True  # read again at the next tick
    assert scheduler.schedule_changed() is True
    assert [message.split(" (")[0] for message in beat_log(caplog)] == ["beat cannot reach the database"]

    database.start()
    assert set(scheduler.all_as_schedule()) == names
    assert scheduler.schedule_changed() is False
    assert beat_log(caplog)[1:] == ["beat reaches the database again"]


def test_beat_waits_for_the_database_at_start_up_with_backoff(database: Database) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 4:
            database.start()

    database.stop()
    wait_for_database(sleep=sleep)
    assert slept == [1.0, 2.0, 4.0, 8.0]
