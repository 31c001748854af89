"""Beat's scheduler: django-celery-beat's ``DatabaseScheduler``, made to outlive a database outage.

The stock scheduler reads its schedule from PostgreSQL; a read that fails with ``OperationalError`` leaves
``tick()`` and beat exits, for good (issue 18: PostgreSQL down for 20 s killed beat). Here a failed read keeps
the schedule beat already has — the heartbeat and the job sweeper go on being sent — and the schedule is read
again at the next tick, until the database answers. At start-up, with no schedule yet, beat waits for the
database, backing off, instead of exiting. An outage is logged once when it starts and once when it ends
(the stock scheduler logs a traceback at every tick).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError, close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
# Start-up waits for the database: 1 s doubling up to this between tries.
MAX_STARTUP_BACKOFF_S = 30.0


class ResilientDatabaseScheduler(DatabaseScheduler):
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    _last_timestamp: datetime | None = None  # the stock scheduler's: when a periodic task last changed
    _read_failed = False  # the last read of the schedule failed: read again at the next tick
    _database_down = False

    def setup_schedule(self) -> None:
        wait_for_database(sleep=self.sleep)
        super().setup_schedule()

    def all_as_schedule(self) -> dict[str, Any]:
        try:
            schedule: dict[str, Any] = super().all_as_schedule()
        except DATABASE_ERRORS as exc:
            self._read_failed = True
            self._went_down(exc)
            # Fresh entries of the rows in memory: they carry the last runs beat made meanwhile (the heap is
            # rebuilt from them), so nothing is sent twice and nothing is late.
            return {name: self.Entry(entry.model, app=self.app) for name, entry in (self._schedule or {}).items()}
        self._read_failed = False
        self._came_back()
        return schedule

    def schedule_changed(self) -> bool:
        """The stock check (has any periodic task changed since the last read?), without its traceback per
        tick while the database is down, and True after a failed read so the schedule is read again at once."""
        if self._read_failed:
            return True
        try:
            close_old_connections()  # a connection broken by a restart is replaced here
            last, current = self._last_timestamp, self.Changes.last_change()
        except DATABASE_ERRORS as exc:
            self._went_down(exc)
            return False
        self._came_back()
        self._last_timestamp = current
        return bool(current and current > (last or current))

    def _went_down(self, exc: Exception) -> None:
        close_old_connections()
        if not self._database_down:
            self._database_down = True
            logger.warning("beat cannot reach the database (%s); going on with the schedule it has", describe(exc))

    def _came_back(self) -> None:
        if self._database_down:
            self._database_down = False
            logger.warning("beat reaches the database again")


def describe(exc: Exception) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def wait_for_database(*, sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once the database answers a query, trying again with backoff meanwhile."""
    from django.db import connection

    delay = 1.0
    while True:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return
        except DATABASE_ERRORS as exc:
            logger.warning("beat is waiting for the database (%s); trying again in %.0f s", describe(exc), delay)
            connection.close()
            sleep(delay)
            delay = min(delay * 2, MAX_STARTUP_BACKOFF_S)
