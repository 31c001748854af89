"""Usage records buffered in memory and written in batches by a background thread, off the request path.

A clean shutdown (interpreter exit, SIGTERM handled by the server) flushes what is left. ``flush()`` is
also what tests call to see rows at once.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from collections import deque

from django.conf import settings
from django.db import DataError, IntegrityError, close_old_connections, transaction

from .rollups import usage_rollups_count
from .rows import UsageRow
from .writer import usage_record_of, usage_rows_write

logger = logging.getLogger(__name__)


class UsageBuffer:
    def __init__(self, *, background: bool = True) -> None:
        self._background = background  # False: only explicit flush() calls write (tests)
        self._items: deque[UsageRow] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()

    def add(self, row: UsageRow) -> None:
        self._items.append(row)
        if self._thread is None and self._background:
            self._start()
        elif len(self._items) >= settings.USAGE_FLUSH_BATCH:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="usage-flusher", daemon=True)
                self._thread.start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(settings.USAGE_FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                logger.exception("writing usage records failed; they stay buffered")
            finally:
                close_old_connections()

    def flush(self) -> int:
        """Write everything buffered now; returns the number of rows written."""
        with self._flush_lock:
            batch: list[UsageRow] = []
            while self._items:
                batch.append(self._items.popleft())
            if not batch:
                return 0
            try:
                usage_rows_write(batch)  # also counts them into the daily roll-ups
            except (IntegrityError, DataError):
                return self._write_one_by_one(batch)  # a bad row must not block the others forever
            except Exception:
                self._items.extendleft(reversed(batch))  # keep them for the next try
                raise
            return len(batch)

    def _write_one_by_one(self, batch: list[UsageRow]) -> int:
        written = 0
        for row in batch:
            for attempt in (row, dataclasses.replace(row, api_key_id=None)):  # the key may have been deleted since
                record = usage_record_of(attempt)
                try:
                    with transaction.atomic():
                        record.save(force_insert=True)
                except (IntegrityError, DataError):
                    continue
                usage_rollups_count([record])
                written += 1
                break
            else:
                logger.error("usage record %s dropped: it cannot be written", row.request_id)
        return written

    def __len__(self) -> int:
        return len(self._items)


usage_buffer = UsageBuffer()
