"""Stress: thousands of async jobs, each read over SSE to its end; every body must be whole.

The soak once saw one SSE body in 1,193 end without ``complete``. This runs the real parts at a higher
rate than the soak (two uvicorn processes, a Celery worker, the fake upstream streaming as fast as it can)
and checks every body exactly: chunks, then ``complete``, the chunks joined being the job's stored output.
Every tenth stream is read a second time once its job is done, as a late reader gets it (the replay).
``STREAM_STRESS_JOBS`` (default 2000) and ``STREAM_STRESS_READERS`` (streams read at once, default 64)
size it. The races themselves are pinned down one by one in ``test_streams.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from accounts.services import apikey_create
from jobs.models import Job
from tests.fixtures import Fake, Gateway, _stop, start_gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

JOBS = int(os.environ.get("STREAM_STRESS_JOBS", "2000"))
READERS = int(os.environ.get("STREAM_STRESS_READERS", "64"))
TOKENS = 24


@pytest.fixture(scope="module")
def servers(django_db_setup: None) -> Iterator[Gateway]:
    """Two web processes on one port, as deployed (and as in the soak)."""
    # Every request ends with its database connection closed: with a connection kept per request thread,
    # a hundred concurrent streams would hold more connections than the shared PostgreSQL allows.
    server = start_gateway({"DB_CONN_MAX_AGE": "0"}, workers=2)
    try:
        yield server
    finally:
        _stop(server.proc)


@dataclass
class Read:
    job_id: str
    events: list[Any]
    problem: str | None = None
    replayed: list[Any] | None = None  # the same stream read again after it ended


def _events(body: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body; keep-alive comments are skipped."""
    return [json.loads(line[6:]) for line in body.split("\n") if line.startswith("data: ")]


async def _submit_and_read(session: aiohttp.ClientSession, url: str, index: int, submitting: asyncio.Semaphore) -> Read:
    body = {"prompt": f"hello number {index}", "max_tokens": TOKENS}
    async with submitting, session.post(url + "/api/v1/generate/async", json=body) as reply:
        accepted = await reply.json()
        assert reply.status == 202, accepted
    job_id = accepted["job_id"]
    try:
        read = Read(job_id, await _read_stream(session, url + accepted["stream_url"]))
        if index % 10 == 0:
            read.replayed = await _read_stream(session, url + accepted["stream_url"])
    except (aiohttp.ClientError, TimeoutError) as exc:  # a body broken off is a finding, not a crash
        return Read(job_id, [], f"{type(exc).__name__}: {exc}")
    return read


async def _read_stream(session: aiohttp.ClientSession, url: str) -> list[Any]:
    async with session.get(url) as reply:
        assert reply.status == 200, await reply.text()
        # To the end of the body: the server ends it after the last message.
        return _events(await reply.text())


async def _stress(url: str, raw: str) -> list[Read]:
    limit = asyncio.Semaphore(READERS)
    # Each submission holds a database connection in the server for a moment; the server shares PostgreSQL
    # (max_connections) with the worker and this test, so fewer are sent at once than streams are read.
    submitting = asyncio.Semaphore(4)
    # A stream that takes longer than this has stalled (each job streams in milliseconds).
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    connector = aiohttp.TCPConnector(limit=READERS * 2)
    headers = {"Authorization": f"Bearer {raw}"}

    async def one(index: int) -> Read:
        async with limit:
            return await _submit_and_read(session, url, index, submitting)

    async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as session:
        return await asyncio.gather(*(one(i) for i in range(JOBS)))


def _problem(read: Read, job: Job) -> str | None:
    """What is wrong with one body, compared with the job's row; None when it is whole."""
    if read.problem:
        return read.problem
    kinds = [event.get("type") for event in read.events]
    if not kinds or kinds[-1] != "complete":
        return f"does not end with complete: {len(kinds)} events, last {kinds[-3:]}"
    if kinds != ["chunk"] * (len(kinds) - 1) + ["complete"]:
        return f"not chunks then complete: {kinds}"
    text = "".join(event["content"] for event in read.events[:-1])
    if text != job.output:
        return f"chunks {text!r} are not the output {job.output!r}"
    tokens = (job.meta or {}).get("completion_tokens")
    if len(kinds) - 1 != tokens:
        return f"{len(kinds) - 1} chunks for {tokens} tokens"
    if read.replayed is not None and read.replayed != read.events:
        return f"read again, {len(read.replayed)} events differ from the live {len(read.events)}"
    return None


def test_every_sse_body_of_thousands_of_jobs_is_whole(
    servers: Gateway, seeded: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="stress", rpm_limit=1_000_000, tpm_limit=1_000_000_000)
    # One token per chunk, as fast as the fake upstream can send them.
    seeded.configure(**{"*": {"tokens": TOKENS, "tps": 0}})

    reads = asyncio.run(_stress(servers.url, raw))

    jobs = {str(job.pk): job for job in Job.objects.filter(pk__in=[read.job_id for read in reads])}
    assert len(jobs) == JOBS
    assert {job.status for job in jobs.values()} == {"succeeded"}
    problems = {read.job_id: p for read in reads if (p := _problem(read, jobs[read.job_id]))}
    assert problems == {}, f"{len(problems)} of {JOBS} bodies were wrong"
    assert {(job.meta or {}).get("completion_tokens") for job in jobs.values()} == {TOKENS}
