"""spignosapi/fastpath/handler.py: requests borrow their thread from a bounded pool, on their first synchronous work."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import connection

from spignosapi.fastpath.handler import RequestThread, Threads


async def _request(threads: Threads, work: list[tuple[str, int]], name: str, gate: threading.Event) -> None:
    """What the handler does for one request: a thread-sensitive context whose calls all go to one thread."""

    def step_in_thread() -> None:
        work.append((name, threading.get_ident()))
        gate.wait(5)

    thread = RequestThread(threads)
    try:
        async with ThreadSensitiveContext(executor=thread):
            for step in range(2):
                await sync_to_async(step_in_thread)()
                if step == 0:
                    await asyncio.sleep(0)  # back on the event loop between the two calls, as views are
    finally:
        threads.give_back(thread)


def test_at_most_the_limit_of_threads_are_lent_and_the_other_requests_wait_for_one() -> None:
    threads = Threads(limit=2, keep=1)
    work: list[tuple[str, int]] = []
    gate = threading.Event()

    async def main() -> None:
        requests = [asyncio.create_task(_request(threads, work, f"r{n}", gate)) for n in range(5)]
        while len(work) < 2 or len(threads._queue) < 3:
            await asyncio.sleep(0.01)
        # Two requests in their threads; the three others submitted their work and wait for a thread.
        assert (len(work), threads.lent, len(threads._queue)) == (2, 2, 3)
        gate.set()
        await asyncio.gather(*requests)

    asyncio.run(main())

    assert sorted(name for name, _ in work) == sorted(f"r{n}" for n in range(5) for _ in range(2))
    by_request: dict[str, set[int]] = {}
    for name, ident in work:
        by_request.setdefault(name, set()).add(ident)
    assert all(len(idents) == 1 for idents in by_request.values())  # each request kept its one thread
    assert len({ident for _, ident in work}) == 2  # the waiting requests were given the same two threads
    assert threads.lent == 0
    assert len(threads._idle) == 1  # one kept, the other shut down


def test_a_request_that_never_leaves_the_event_loop_borrows_no_thread() -> None:
    threads = Threads(limit=1, keep=1)

    async def main() -> None:
        thread = RequestThread(threads)
        async with ThreadSensitiveContext(executor=thread):
            assert threads.lent == 0
        threads.give_back(thread)

    asyncio.run(main())
    assert (threads.lent, threads._idle) == (0, [])


def test_a_request_cancelled_while_it_waits_for_a_thread_leaves_the_queue_and_its_work_never_runs() -> None:
    threads = Threads(limit=1, keep=1)
    work: list[tuple[str, int]] = []
    gate = threading.Event()

    async def main() -> None:
        holder = asyncio.create_task(_request(threads, work, "holder", gate))
        while not work:
            await asyncio.sleep(0.01)
        waiter = asyncio.create_task(_request(threads, work, "waiter", gate))
        while not threads._queue:
            await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert len(threads._queue) == 0
        gate.set()
        await holder

    asyncio.run(main())
    assert [name for name, _ in work] == ["holder", "holder"]
    assert threads.lent == 0


@pytest.mark.django_db(transaction=True)
def test_the_thread_gives_its_database_connection_back_to_the_pool_after_each_call() -> None:
    threads = Threads(limit=1, keep=1)
    seen: list[object] = []

    def query() -> None:
        seen.append(connection.connection)  # what the thread holds when a call starts
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        seen.append(connection.connection)

    async def main() -> None:
        thread = RequestThread(threads)
        async with ThreadSensitiveContext(executor=thread):
            await sync_to_async(query)()
            await asyncio.sleep(0)  # the request waits on the event loop (an SSE stream would, for minutes)
            await sync_to_async(query)()
        threads.give_back(thread)

    asyncio.run(main())
    assert seen[0] is None and seen[2] is None  # given back in between: the request held none while it waited
    assert seen[1] is not None and seen[3] is not None


def test_a_request_that_gave_its_thread_back_while_streaming_is_lent_one_again_for_later_work() -> None:
    threads = Threads(limit=1, keep=1)
    order: list[str] = []

    async def main() -> None:
        streaming = RequestThread(threads)
        other = RequestThread(threads)
        async with ThreadSensitiveContext(executor=streaming):
            await sync_to_async(lambda: order.append("view"))()
            threads.give_back(streaming)  # what the handler does once the response streams
            async with ThreadSensitiveContext(executor=other):  # another request gets the only thread
                await sync_to_async(lambda: order.append("other"))()
            threads.give_back(other)
            await sync_to_async(lambda: order.append("close"))()  # closing the streamed response
        threads.give_back(streaming)

    asyncio.run(asyncio.wait_for(main(), 30))  # without the give-back, "other" would wait for ever
    assert order == ["view", "other", "close"]
    assert (threads.lent, len(threads._idle)) == (0, 1)
