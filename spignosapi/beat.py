"""Beat's scheduler: django-celery-beat's ``DatabaseScheduler``, made to outlive a database outage.

The stock scheduler reads its schedule from PostgreSQL; when a read fails with ``OperationalError`` the error
leaves ``tick()`` and beat exits, for good (issue 18: PostgreSQL down for 20 s killed beat). Here a failed read
keeps the schedule beat already has — the heartbeat and the job sweeper go on being sent — and the schedule is
read again at the next tick, until the database answers. At start-up, with no schedule yet, beat waits for
the database, backing off, instead of exiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError, close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
# Start-up waits for the database: 1 s doubling up to this between tries.
MAX_STARTUP_BACKOFF_S = 30.0


class ResilientDatabaseScheduler(DatabaseScheduler):
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    _read_failed = False

    def setup_schedule(self) -> None:
        wait_for_database(sleep=self.sleep)
        super().setup_schedule()

    def all_as_schedule(self) -> dict[str, Any]:
        try:
            schedule: dict[str, Any] = super().all_as_schedule()
        except DATABASE_ERRORS as exc:
            close_old_connections()  # a broken connection is replaced at the next try
            self._read_failed = True
            logger.warning("beat could not read its schedule (%s); keeping the one it has", type(exc).__name__)
            # Fresh entries of the rows in memory: they carry the last runs beat made meanwhile (the heap is
            # rebuilt from them), so nothing is sent twice and nothing is late.
            return {name: self.Entry(entry.model, app=self.app) for name, entry in (self._schedule or {}).items()}
        if self._read_failed:
            logger.warning("beat read its schedule again: the database is back")
        self._read_failed = False
        return schedule

    def schedule_changed(self) -> bool:
        # After a failed read, read again at once rather than after the stock scheduler's five minutes.
        return True if self._read_failed else bool(super().schedule_changed())


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
            logger.warning("beat is waiting for the database (%s); trying again in %.0f s", type(exc).__name__, delay)
            close_old_connections()
            connection.close()
            sleep(delay)
            delay = min(delay * 2, MAX_STARTUP_BACKOFF_S)
