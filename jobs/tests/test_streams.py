"""The stream of a job, read while it is written: real Redis, the real publisher and reader, one event loop.

Readers wait with a poll of an hour, so a message only counts if it reaches them live (a shorter poll
would hide a lost message behind the next replay). Messages are published from another thread while the
readers' event loop is held, which fixes the order of events exactly: whatever Redis did with a message,
it did before any reader runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings

from jobs.streams import Publisher, StaleDelivery, buffer_key, delivery_key, subscribe

HOUR = 3600.0


def chunk(text: str) -> dict[str, Any]:
    return {"type": "chunk", "content": text}


COMPLETE = {"type": "complete", "meta": {"completion_tokens": 2}}


def new_session() -> str:
    return secrets.token_urlsafe(24)


def publish_now(session_id: str, *messages: dict[str, Any]) -> None:
    """Publish as a worker does, from a thread and event loop of its own; returns once Redis has them all.

    Called from a coroutine, it holds that coroutine's event loop until then."""

    async def publish() -> None:
        publisher = Publisher(session_id)
        try:
            for message in messages:
                await publisher.publish(message)
        finally:
            await publisher.close()

    thread = threading.Thread(target=asyncio.run, args=(publish(),))
    thread.start()
    thread.join()


def blocked_reads() -> int:
    """Connections waiting in Redis for a stream's next message (in the test's database of it)."""
    client = redis.Redis.from_url(settings.REDIS_CACHE_URL)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    try:
        return sum(1 for c in client.client_list() if (c["cmd"], c["db"]) == ("xread", str(db)) and "b" in c["flags"])
    finally:
        client.close()


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


class Reader:
    """A subscriber running in a task of its own, keeping what it receives."""

    def __init__(self, session_id: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read(session_id))

    async def _read(self, session_id: str) -> list[dict[str, Any]]:
        async for message in subscribe(session_id, poll_s=HOUR):
            if message is not None:
                self.messages.append(message)
        return self.messages

    async def received(self, count: int) -> None:
        await until(lambda: len(self.messages) >= count)


def test_a_reader_cancelled_in_the_middle_of_a_read_takes_nothing_from_another_reader() -> None:
    # With a Channels group, the one reader of a web process that was popping the process's messages
    # could be cancelled (its client gone, or its keep-alive wait over) after Redis had handed it another
    # stream's message: that message was lost, and a lost ``complete`` left its stream open for good.
    async def scenario() -> list[dict[str, Any]]:
        others = blocked_reads()  # readers of other tests' streams, if any are still open
        first, second = new_session(), new_session()
        publish_now(first, chunk("a"))
        one = Reader(first)
        await one.received(1)
        publish_now(second, chunk("b"))
        two = Reader(second)
        await two.received(1)
        await until(lambda: blocked_reads() == others + 2)  # both wait in Redis for their next message

        publish_now(second, COMPLETE)  # the loop is held: no reader has run since
        one.task.cancel()  # and the first reader goes away before it runs again
        return await asyncio.wait_for(two.task, 10)

    assert asyncio.run(scenario()) == [chunk("b"), COMPLETE]


def test_a_burst_on_one_stream_does_not_crowd_out_the_end_of_another() -> None:
    # A Channels layer holds at most ``capacity`` (1000) undelivered messages per web process, every stream
    # of the process in one queue, and drops the rest without a word: a busy stream cost its neighbours
    # their last message.
    burst = [chunk(f" w{i}") for i in range(1500)]

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        others = blocked_reads()
        busy, quiet = new_session(), new_session()
        publish_now(busy, chunk("start"))
        publish_now(quiet, chunk("hello"))
        one, two = Reader(busy), Reader(quiet)
        await one.received(1)
        await two.received(1)
        await until(lambda: blocked_reads() == others + 2)
        publish_now(busy, *burst, COMPLETE)  # all written while the readers cannot read
        publish_now(quiet, COMPLETE)
        busy_messages, quiet_messages = await asyncio.wait_for(asyncio.gather(one.task, two.task), 30)
        return busy_messages, quiet_messages

    assert asyncio.run(scenario()) == ([chunk("start"), *burst, COMPLETE], [chunk("hello"), COMPLETE])


def test_a_reader_joining_mid_stream_gets_the_replay_then_the_live_tail_once_each_in_order() -> None:
    async def scenario() -> list[dict[str, Any]]:
        others = blocked_reads()
        session = new_session()
        publish_now(session, chunk("one"), chunk(" two"))
        reader = Reader(session)
        await reader.received(2)
        await until(lambda: blocked_reads() == others + 1)
        publish_now(session, chunk(" three"))
        await reader.received(3)
        publish_now(session, {"type": "reset"}, chunk("again"), COMPLETE)
        return await asyncio.wait_for(reader.task, 10)

    assert asyncio.run(scenario()) == [
        chunk("one"),
        chunk(" two"),
        chunk(" three"),
        {"type": "reset"},
        chunk("again"),
        COMPLETE,
    ]


def test_a_quiet_stream_yields_keep_alives_and_numbers_messages_from_one() -> None:
    async def scenario() -> tuple[list[dict[str, Any] | None], list[int]]:
        session = new_session()
        publisher = Publisher(session)
        try:
            numbers = [await publisher.publish(chunk("x")), await publisher.publish(COMPLETE)]
            assert await publisher.published() == 2
        finally:
            await publisher.close()
        quiet = new_session()
        keep_alives = []
        async with contextlib.aclosing(subscribe(quiet, poll_s=0.01)) as messages:
            async for message in messages:
                keep_alives.append(message)
                if len(keep_alives) == 2:
                    break
        return keep_alives, numbers

    assert asyncio.run(scenario()) == ([None, None], [1, 2])


def test_a_reader_resumes_after_the_messages_it_has_and_replays_all_for_an_id_the_stream_never_gave() -> None:
    async def read(session: str, after: int) -> list[dict[str, Any] | None]:
        return [message async for message in subscribe(session, poll_s=HOUR, after=after)]

    async def scenario() -> tuple[list[dict[str, Any] | None], list[dict[str, Any] | None]]:
        session = new_session()
        publish_now(session, chunk("one"), chunk(" two"), COMPLETE)
        return await read(session, 2), await read(session, 4)

    assert asyncio.run(scenario()) == ([COMPLETE], [chunk("one"), chunk(" two"), COMPLETE])


def test_a_reader_waiting_for_its_next_message_ends_as_soon_as_it_is_told_to_stop() -> None:
    async def scenario() -> list[dict[str, Any] | None]:
        others = blocked_reads()
        session = new_session()
        publish_now(session, chunk("one"))
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        received: list[dict[str, Any] | None] = []

        async def read() -> None:
            async for message in subscribe(session, poll_s=HOUR, stop=stop):
                received.append(message)

        reader = asyncio.create_task(read())
        await until(lambda: received == [chunk("one")] and blocked_reads() == others + 1)
        stop.set_result(None)
        await asyncio.wait_for(reader, 10)
        await until(lambda: blocked_reads() == others)  # its connection is closed
        return received

    assert asyncio.run(scenario()) == [chunk("one")]


def test_an_append_tried_again_after_its_reply_was_lost_is_not_appended_twice() -> None:
    # redis-py tries a command again when the connection broke before the reply came: the script had run.
    async def scenario() -> tuple[list[int], int, dict[str, Any] | None]:
        session = new_session()
        publisher = Publisher(session)
        try:
            first = await publisher.publish(chunk("one"))
            args: list[str | int] = ['{"type": "chunk", "content": " two"}', 3600, "token-of-this-append", 0, ""]
            keys = [buffer_key(session), delivery_key(session)]
            numbers = [await publisher._append(keys=keys, args=args) for _ in range(2)]
            return [first, *numbers], await publisher.published(), await publisher.last()
        finally:
            await publisher.close()

    assert asyncio.run(scenario()) == ([1, 2, 2], 2, chunk(" two"))


# --- a stream whose job ended always ends -------------------------------------------------------------------

CANCELLED = {"type": "error", "error": {"message": "The job was cancelled.", "code": "cancelled"}}


class Ending:
    """Stands for the job's row (jobs.lifecycle.stream_ending reads it): the last message once the job ended."""

    def __init__(self, message: dict[str, Any] | None = None) -> None:
        self.message = message
        self.asked = 0

    async def __call__(self) -> dict[str, Any] | None:
        self.asked += 1
        return self.message


def stream_messages(session_id: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(settings.REDIS_CACHE_URL)
    try:
        entries: Any = client.xrange(buffer_key(session_id))
        return [json.loads(fields[b"m"]) for _, fields in entries]
    finally:
        client.close()


async def read_all(session_id: str, ending: Ending, *, after: int = 0) -> list[dict[str, Any] | None]:
    return [message async for message in subscribe(session_id, poll_s=0.01, after=after, ending=ending)]


def test_a_reader_of_a_job_that_ended_without_its_last_message_ends_with_the_one_the_job_gives() -> None:
    # A cancel while Redis was down published once and gave up: the stream stopped after its chunks.
    session = new_session()
    publish_now(session, chunk("a"))
    running = Ending()

    async def scenario() -> list[dict[str, Any] | None]:
        received: list[dict[str, Any] | None] = []
        async with contextlib.aclosing(subscribe(session, poll_s=0.01, ending=running)) as messages:
            async for message in messages:
                received.append(message)
                if running.asked == 2:  # the job still runs: keep-alives, and the stream stays as it was
                    running.message = CANCELLED
        return received

    assert asyncio.run(scenario()) == [chunk("a"), None, None, CANCELLED]
    assert stream_messages(session) == [chunk("a"), CANCELLED]
    # A later reader reads the same end, appended once.
    assert asyncio.run(read_all(session, Ending(CANCELLED))) == [chunk("a"), CANCELLED]
    assert stream_messages(session) == [chunk("a"), CANCELLED]


def test_a_last_message_that_raced_in_before_the_reader_appended_its_own_is_the_one_read() -> None:
    async def scenario() -> tuple[int, int]:
        session = new_session()
        publisher = Publisher(session)
        try:
            await publisher.publish(chunk("a"))
            await publisher.publish(COMPLETE)  # the worker's, just before the reader's poll ended
            return await publisher.end(CANCELLED), await publisher.published()
        finally:
            await publisher.close()

    assert asyncio.run(scenario()) == (2, 2)


def test_a_reader_arriving_after_the_stream_expired_reads_the_end_of_the_job() -> None:
    session = new_session()  # the stream's key expired (BUFFER_TTL_S): nothing in Redis at all
    assert asyncio.run(read_all(session, Ending(COMPLETE))) == [COMPLETE]
    assert stream_messages(session) == [COMPLETE]


def test_a_reader_whose_stream_expired_under_it_still_ends() -> None:
    # It had read 3 messages; the key expired and the end was appended to a new stream as message 1.
    session = new_session()
    publish_now(session, chunk("a"), chunk("b"), chunk("c"))

    async def scenario() -> list[dict[str, Any] | None]:
        received: list[dict[str, Any] | None] = []
        ending = Ending()
        async for message in subscribe(session, poll_s=0.01, ending=ending):
            received.append(message)
            if len(received) == 3:
                client = redis.Redis.from_url(settings.REDIS_CACHE_URL)
                client.delete(buffer_key(session))
                client.close()
                ending.message = COMPLETE
        return received

    assert asyncio.run(scenario()) == [chunk("a"), chunk("b"), chunk("c"), COMPLETE]


# --- appends are fenced by delivery -------------------------------------------------------------------------


def test_an_earlier_delivery_cannot_append_once_a_later_one_has() -> None:
    # The sweeper gave the job to delivery 2 (its ``reset`` is in the stream) while delivery 1, whose lease
    # ran out, still streams until its next renewal: its chunks must not land after the reset.
    async def scenario() -> tuple[list[int], list[dict[str, Any]]]:
        session = new_session()
        first, second, outside = Publisher(session, delivery=1), Publisher(session, delivery=2), Publisher(session)
        try:
            numbers = [await first.publish(chunk("a")), await second.publish({"type": "reset"})]
            with pytest.raises(StaleDelivery):
                await first.publish(chunk("b"))
            numbers += [await second.publish(chunk("A")), await outside.publish(CANCELLED)]
            return numbers, stream_messages(session)
        finally:
            for publisher in (first, second, outside):
                await publisher.close()

    numbers, messages = asyncio.run(scenario())
    assert numbers == [1, 2, 3, 4]
    assert messages == [chunk("a"), {"type": "reset"}, chunk("A"), CANCELLED]


def test_a_fenced_append_tried_again_after_its_reply_was_lost_is_not_appended_twice() -> None:
    async def scenario() -> tuple[list[int], int]:
        session = new_session()
        publisher = Publisher(session, delivery=3)
        try:
            args: list[str | int] = ['{"type": "chunk", "content": "a"}', 3600, "token-of-this-append", 3, ""]
            keys = [buffer_key(session), delivery_key(session)]
            numbers = [await publisher._append(keys=keys, args=args) for _ in range(2)]
            return numbers, await publisher.published()
        finally:
            await publisher.close()

    assert asyncio.run(scenario()) == ([1, 1], 1)
