"""SIGTERM to a web process with open streams: the streams end at once telling their clients to reconnect, the
process exits within the bound, and a client reconnecting to another server loses nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts.services import apikey_create
from jobs.models import Job
from tests.fixtures import Fake, Gateway, _stop, start_gateway, start_worker, stop_group
from tests.helpers import private_redis, wait_until
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)

# The bound of the issue: a web process exits within 10 s of SIGTERM (docker stop's default grace period).
EXIT_BOUND_S = 10


@dataclass
class Platform:
    first: Gateway
    second: Gateway
    fake: Fake
    raw: str


@pytest.fixture(scope="module")
def others(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Gateway]]:
    """A broker, a worker and a web server of the module's own: what goes on after the first server stops."""
    logs = tmp_path_factory.mktemp("shutdown")
    with private_redis() as (broker, _):
        worker = start_worker(name="shutdown", log=logs / "worker.log", broker_url=broker, loglevel="WARNING")
        try:
            second = start_gateway({"CELERY_BROKER_URL": broker}, log=logs / "second.log")
            try:
                yield broker, second
            finally:
                _stop(second.proc)
        finally:
            stop_group(worker)


@pytest.fixture
def platform(seeded: Fake, others: tuple[str, Gateway], tmp_path: Any) -> Iterator[Platform]:
    """The first web server is the test's own, of two processes (SIGTERM goes to their supervisor, as with
    docker stop) and with no graceful-shutdown timeout: without the drain it would wait for every stream."""
    broker, second = others
    first = start_gateway({"CELERY_BROKER_URL": broker}, log=tmp_path / "first.log", workers=2)  # as the Dockerfile
    first.log = tmp_path / "first.log"
    try:
        _, raw = apikey_create(name="shutdown")
        yield Platform(first, second, seeded, raw)
    finally:
        if first.proc.poll() is None:
            _stop(first.proc)


@dataclass
class Event:
    id: int | None = None
    data: dict[str, Any] | None = None
    retry: int | None = None
    lines: list[str] = field(default_factory=list)


def sse(url: str, raw: str, last_event_id: int | None = None) -> Iterator[Event]:
    """The events of an SSE stream as they arrive (comments, the keep-alives, left out)."""
    headers = {"Authorization": f"Bearer {raw}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        event = Event()
        for raw_line in response:
            line = raw_line.decode().rstrip("\n")
            if line == "":
                if event.lines:
                    yield event
                event = Event()
                continue
            if line.startswith(":"):
                continue
            event.lines.append(line)
            name, _, value = line.partition(": ")
            if name == "id":
                event.id = int(value)
            elif name == "data":
                event.data = json.loads(value)
            elif name == "retry":
                event.retry = int(value)


def sigterm(server: Gateway) -> float:
    """SIGTERM the server; the seconds it took to exit."""
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the web process was still running {EXIT_BOUND_S} s after SIGTERM")
    return time.monotonic() - started


def test_sigterm_ends_an_open_sse_stream_with_a_retry_hint_and_the_reconnection_elsewhere_gets_the_rest(
    platform: Platform,
) -> None:
    platform.fake.configure(**{"demo-fast": {"tps": 10, "tokens": 60}})  # six seconds of tokens
    reply = call(
        "POST", platform.first.url + "/api/v1/generate/async", {"prompt": "hello", "max_tokens": 60}, key=platform.raw
    )
    assert reply.status == 202, reply.text
    job = reply.json()

    received: list[Event] = []
    stream = sse(platform.first.url + job["stream_url"], platform.raw)
    for event in stream:
        received.append(event)
        if len(received) == 3:
            break
    elapsed = sigterm(platform.first)
    received.extend(stream)  # what the server sent until the shutdown reached the stream, then its end
    assert elapsed < EXIT_BOUND_S

    *messages, hint = received
    assert (hint.lines, hint.retry) == (["retry: 1000"], 1000)
    assert [m.id for m in messages] == list(range(1, len(messages) + 1))
    assert all(m.data is not None and m.data["type"] == "chunk" for m in messages)  # cut mid-job
    assert Job.objects.get(pk=job["job_id"]).status == "running"
    assert platform.first.log is not None
    assert "timeout graceful shutdown exceeded" not in platform.first.log.read_text()

    # As EventSource does: reconnect (here to the other server) with the last id received.
    rest = list(sse(platform.second.url + job["stream_url"], platform.raw, last_event_id=messages[-1].id))
    everything = messages + rest
    assert [m.id for m in everything] == list(range(1, len(everything) + 1))
    assert [m.data["type"] for m in everything if m.data] == ["chunk"] * 60 + ["complete"]
    done = Job.objects.get(pk=job["job_id"])
    assert done.status == "succeeded"
    assert "".join(m.data["content"] for m in everything[:-1] if m.data) == done.output
    assert everything[-1].data == {"type": "complete", "meta": done.meta}


def test_sigterm_closes_an_open_websocket_with_1012_and_the_reconnection_elsewhere_replays_it(
    platform: Platform,
) -> None:
    platform.fake.configure(**{"demo-fast": {"tps": 10, "tokens": 60}})
    reply = call(
        "POST", platform.first.url + "/api/v1/generate/async", {"prompt": "hello", "max_tokens": 60}, key=platform.raw
    )
    assert reply.status == 202, reply.text
    job = reply.json()
    headers = {"Authorization": f"Bearer {platform.raw}"}

    with connect(platform.first.url.replace("http://", "ws://") + job["ws_url"], additional_headers=headers) as ws:
        first = [json.loads(ws.recv(timeout=30)) for _ in range(3)]
        elapsed = sigterm(platform.first)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                first.append(json.loads(ws.recv(timeout=EXIT_BOUND_S)))
    assert elapsed < EXIT_BOUND_S
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # service restart: reconnect
    assert [m["type"] for m in first] == ["chunk"] * len(first)

    with connect(platform.second.url.replace("http://", "ws://") + job["ws_url"], additional_headers=headers) as ws:
        replay: list[dict[str, Any]] = []
        while not replay or replay[-1]["type"] not in ("complete", "error"):
            replay.append(json.loads(ws.recv(timeout=30)))
    assert replay[: len(first)] == first  # the replay starts from the first message
    assert [m["type"] for m in replay] == ["chunk"] * 60 + ["complete"]
    done = Job.objects.get(pk=job["job_id"])
    assert "".join(m["content"] for m in replay[:-1]) == done.output


def test_the_ids_of_a_resumed_stream_are_its_sequence_numbers_and_an_unknown_id_replays_it_all(
    seeded: Fake, others: tuple[str, Gateway]
) -> None:
    _, server = others
    _, raw = apikey_create(name="ids")
    reply = call("POST", server.url + "/api/v1/generate/async", {"prompt": "hi", "max_tokens": 4}, key=raw)
    assert reply.status == 202, reply.text
    job = reply.json()
    assert wait_until(lambda: Job.objects.get(pk=job["job_id"]).status == "succeeded", timeout=30)
    url = server.url + job["stream_url"]

    whole = list(sse(url, raw))
    assert [e.id for e in whole] == [1, 2, 3, 4, 5]  # four chunks and complete
    assert [(e.id, e.data) for e in sse(url, raw, last_event_id=3)] == [(e.id, e.data) for e in whole[3:]]
    assert [(e.id, e.data) for e in sse(url, raw, last_event_id=99)] == [(e.id, e.data) for e in whole]
