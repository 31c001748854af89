"""One long-lived event loop per thread, for synchronous code that runs coroutines (Celery tasks, commands).

``asyncio.run`` made a new loop for every job, and the soak (``make soak``) showed what that costs a worker:
each loop's default executor started new threads, each opening a PostgreSQL connection that was closed
only when the garbage collector reached it (20 → 60 connections in 150 s, until PostgreSQL refused more);
the per-loop client caches (Redis, the upstream sessions) kept every finished loop alive (~10 KiB a
job); and every job opened new upstream and Redis connections. A thread's loop here lives as long as the
process: its executor threads, their database connections and the pooled clients serve job after job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()
_runners: list[asyncio.Runner] = []
_lock = threading.Lock()
_generation = 0
_tidy_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


class DatabaseThreads(ThreadPoolExecutor):
    """An event loop's default executor (where ``sync_to_async(thread_sensitive=False)`` runs the ORM), of
    ``DB_THREADS`` threads, which after each call give their database connection back to the pool (or drop
    one that failed or outlived ``CONN_MAX_AGE``, without a pool).

    Django does that at the start and end of each request, in the request's thread; these threads serve no
    request, so without it a thread kept its connection out of the pool between calls, and a connection
    broken by a database restart stayed in its thread and failed every later query there.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(_then_tidy, fn, args, kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Each thread closes its database connections before it ends (else they stay open until the garbage
        collector finds them): one closing call per thread, held at a barrier so no thread takes two."""
        count = len(self._threads)
        if count:
            barrier = threading.Barrier(count)

            def close() -> None:
                from django.db import connections

                connections.close_all()
                barrier.wait(timeout=10)

            closing = [ThreadPoolExecutor.submit(self, close) for _ in range(count)]
            for future in closing:
                with contextlib.suppress(Exception):
                    future.result(timeout=15)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def _then_tidy(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    from django.db import close_old_connections

    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


def use_database_threads(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``DatabaseThreads`` the default executor of ``loop`` (once)."""
    if loop not in _tidy_loops:
        from django.conf import settings

        _tidy_loops.add(loop)
        loop.set_default_executor(DatabaseThreads(max_workers=settings.DB_THREADS, thread_name_prefix="db"))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on this thread's long-lived event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # This thread already runs a loop (an async caller, Playwright's sync API in tests): a thread of its
        # own for this one call, with a loop of its own.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coro).result()
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    # A forked child must not use its parent's loop; after close_all() a thread starts a new one.
    if runner is None or _local.owner != (os.getpid(), _generation):
        runner = asyncio.Runner()
        use_database_threads(runner.get_loop())
        _local.runner, _local.owner = runner, (os.getpid(), _generation)
        with _lock:
            _runners.append(runner)
    loop = runner.get_loop()
    try:
        return runner.run(coro)
    finally:
        _cancel_leftovers(loop)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does at its end: tasks the coroutine left behind are cancelled and awaited, so
    nothing of one job runs on during the next (the pooled clients are not tasks: they stay)."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def close_all() -> None:
    """Close this process's loops (a worker process shutting down): their clients close with them."""
    global _generation
    with _lock:
        runners = list(_runners)
        _runners.clear()
        _generation += 1
    for runner in runners:
        with contextlib.suppress(Exception):  # shutting down: a loop that cannot close cleanly is dropped
            runner.close()
