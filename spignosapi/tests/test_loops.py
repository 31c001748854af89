"""spignosapi/loops.py: a worker thread's event loop lives on; its database threads drop broken connections."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from spignosapi import loops

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _database_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_one_loop_serves_every_call_of_a_thread_and_its_database_threads_borrow_from_the_pool() -> None:
    async def job() -> tuple[asyncio.AbstractEventLoop, int]:
        loop = asyncio.get_running_loop()
        # The loop's executor and the pool's statistics are attributes typeshed and django-stubs do not declare.
        assert isinstance(loop._default_executor, loops.DatabaseThreads)  # type: ignore[attr-defined]
        assert loop._default_executor._max_workers == settings.DB_THREADS  # type: ignore[attr-defined]
        return loop, await sync_to_async(_backend_pid, thread_sensitive=False)()

    before = _database_connections()  # opens this process's pool; this thread holds one of its connections
    try:
        results = [loops.run(job()) for _ in range(30)]
        during = _database_connections()
    finally:
        loops.close_all()  # as a worker process does when it stops: its database threads give theirs back

    assert len({id(loop) for loop, _ in results}) == 1
    # asyncio.run's new loop per job opened new threads, each with a connection of its own, every time; and
    # without the pool each database thread kept one. Now each call borrows one of the pool's and gives it back.
    pids = {pid for _, pid in results}
    assert during == before
    assert 1 <= len(pids) <= connection.pool.get_stats()["pool_size"]  # type: ignore[attr-defined]
    assert _database_connections() == before


def test_a_database_thread_replaces_a_connection_the_database_closed() -> None:
    threads = loops.DatabaseThreads(max_workers=1)
    try:
        first = threads.submit(_backend_pid).result()
        with connection.cursor() as cursor:  # the server ends that session (as a restart would)
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])

        # The thread gave the connection back after its call; the pool checks a connection before lending it
        # (CONN_HEALTH_CHECKS): the dead one is dropped and the next calls get live ones instead of failing.
        second = threads.submit(_backend_pid).result()
        third = threads.submit(_backend_pid).result()
        assert first not in (second, third)
    finally:
        threads.submit(lambda: connection.close()).result()
        threads.shutdown()


def test_what_a_call_leaves_running_is_cancelled_when_it_returns() -> None:
    started: list[asyncio.Task[None]] = []

    async def leaves_a_task() -> None:
        started.append(asyncio.create_task(asyncio.sleep(3600)))

    async def later() -> bool:
        return started[0].cancelled()

    try:
        loops.run(leaves_a_task())
        assert loops.run(later()) is True  # as asyncio.run would have, though the loop lives on
    finally:
        loops.close_all()
