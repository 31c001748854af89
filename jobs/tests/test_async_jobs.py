"""Async jobs end to end: a real worker process, real Redis and PostgreSQL, the fake upstream over HTTP."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts.selectors import apikey_lookup
from accounts.services import apikey_create
from jobs.models import Job
from jobs.services import job_submit
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import call, sse_events

pytestmark = pytest.mark.django_db(transaction=True)


def submit(gateway: Gateway, raw: str, **body: Any) -> dict[str, Any]:
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": "hello there", **body}, key=raw)
    assert reply.status == 202, reply.text
    return dict(reply.json())


def wait_for_status(job_id: str, *statuses: str, timeout: float = 30) -> Job:
    assert wait_until(lambda: Job.objects.get(pk=job_id).status in statuses, timeout=timeout), Job.objects.get(
        pk=job_id
    ).status
    return Job.objects.get(pk=job_id)


def ws_messages(gateway: Gateway, path: str, raw: str) -> list[dict[str, Any]]:
    url = gateway.url.replace("http://", "ws://") + path
    messages = []
    with connect(url, additional_headers={"Authorization": f"Bearer {raw}"}, open_timeout=10) as ws:
        while True:
            message = json.loads(ws.recv(timeout=30))
            messages.append(message)
            if message["type"] in ("complete", "error"):
                break
    return messages


def test_it_answers_202_with_every_field_at_once(gateway: Gateway, celery_worker: subprocess.Popen[bytes]) -> None:
    key, raw = apikey_create(name="k")
    body = submit(gateway, raw, priority=7, max_tokens=3)
    assert set(body) == {"status", "job_id", "task_id", "session_id", "stream_url", "ws_url", "status_url"}
    assert body["status"] == "queued"
    assert body["stream_url"] == f"/api/v1/stream/{body['session_id']}"
    assert body["ws_url"] == f"/ws/v1/stream/{body['session_id']}/"
    assert body["status_url"] == f"/api/v1/jobs/{body['job_id']}"
    assert len(body["session_id"]) >= 32
    job = Job.objects.get(pk=body["job_id"])
    assert (job.api_key_id, job.priority, job.queue, job.task_id) == (key.pk, 7, "high", body["task_id"])

    finished = wait_for_status(body["job_id"], "succeeded")
    assert len(finished.output.split()) == 3
    reply = call("GET", gateway.url + body["status_url"], key=raw)
    assert reply.status == 200
    detail = reply.json()
    assert detail["status"] == "succeeded"
    assert detail["output"] == finished.output
    assert detail["meta"]["completion_tokens"] == 3
    assert detail["meta"]["model"] == "demo/demo-fast"
    assert detail["queue"] == "high"
    assert detail["started_at"] is not None and detail["finished_at"] is not None


@pytest.mark.parametrize(("priority", "queue"), [(5, "high"), (4, "default"), (-4, "default"), (-5, "low")])
def test_priority_picks_the_queue(gateway: Gateway, priority: int, queue: str) -> None:
    _, raw = apikey_create(name="k")
    body = submit(gateway, raw, priority=priority)
    assert Job.objects.get(pk=body["job_id"]).queue == queue


def test_a_websocket_client_receives_every_chunk_in_order_then_complete(
    gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"tps": 20}})  # slow enough to connect while it streams
    body = submit(gateway, raw, max_tokens=12)
    messages = ws_messages(gateway, body["ws_url"], raw)
    chunks = [m["content"] for m in messages if m["type"] == "chunk"]
    assert [m["type"] for m in messages] == ["chunk"] * 12 + ["complete"]
    job = wait_for_status(body["job_id"], "succeeded")
    assert "".join(chunks) == job.output
    assert messages[-1]["meta"]["completion_tokens"] == 12


def test_websocket_chunks_arrive_live_while_the_job_runs(
    gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"tps": 8}})
    body = submit(gateway, raw, max_tokens=8)
    url = gateway.url.replace("http://", "ws://") + body["ws_url"]
    with connect(url, additional_headers={"Authorization": f"Bearer {raw}"}, open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=30))
        status_at_first_chunk = Job.objects.get(pk=body["job_id"]).status
        rest: list[dict[str, Any]] = []
        while not rest or rest[-1]["type"] != "complete":
            rest.append(json.loads(ws.recv(timeout=30)))
    assert first["type"] == "chunk"
    assert status_at_first_chunk == "running"  # relayed as produced, not in one burst at the end
    assert len(rest) == 8


def test_a_late_subscriber_gets_the_replay_over_sse(gateway: Gateway, celery_worker: subprocess.Popen[bytes]) -> None:
    _, raw = apikey_create(name="k")
    body = submit(gateway, raw, max_tokens=6)
    job = wait_for_status(body["job_id"], "succeeded")
    reply = call("GET", gateway.url + body["stream_url"], key=raw)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply)
    assert [e["type"] for e in events] == ["chunk"] * 6 + ["complete"]
    assert "".join(e["content"] for e in events[:-1]) == job.output
    # and over the WebSocket too
    assert ws_messages(gateway, body["ws_url"], raw) == events


def test_another_key_cannot_see_the_job_or_its_stream(gateway: Gateway) -> None:
    _, owner = apikey_create(name="owner")
    _, other = apikey_create(name="other")
    body = submit(gateway, owner)
    assert call("GET", gateway.url + body["status_url"], key=other).status == 404
    assert call("DELETE", gateway.url + body["status_url"], key=other).status == 404
    assert call("GET", gateway.url + body["stream_url"], key=other).status == 404
    assert call("GET", gateway.url + body["stream_url"]).status == 401
    url = gateway.url.replace("http://", "ws://") + body["ws_url"]
    with (
        connect(url, additional_headers={"Authorization": f"Bearer {other}"}, open_timeout=10) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404  # as for a stream that does not exist


def test_a_staff_key_can_read_any_job(gateway: Gateway) -> None:
    _, owner = apikey_create(name="owner")
    _, staff = apikey_create(name="staff", is_staff=True)
    body = submit(gateway, owner)
    assert call("GET", gateway.url + body["status_url"], key=staff).status == 200


def test_cancel_stops_a_running_job_and_ends_its_stream(
    gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"tps": 10, "tokens": 200}})
    body = submit(gateway, raw, max_tokens=200)
    wait_for_status(body["job_id"], "running")
    reply = call("DELETE", gateway.url + body["status_url"], key=raw)
    assert reply.status == 200
    assert reply.json()["status"] == "cancelled"
    events = sse_events(call("GET", gateway.url + body["stream_url"], key=raw))
    assert events[-1] == {
        "type": "error",
        "error": {"message": "The job was cancelled.", "type": "cancelled", "code": "cancelled", "param": None},
    }
    job = Job.objects.get(pk=body["job_id"])
    assert job.status == "cancelled"
    assert len([e for e in events if e["type"] == "chunk"]) < 200


def test_unknown_job_ids_answer_404(gateway: Gateway) -> None:
    _, raw = apikey_create(name="k")
    reply = call("GET", gateway.url + "/api/v1/jobs/00000000-0000-0000-0000-000000000000", key=raw)
    assert reply.status == 404
    assert reply.json()["error"]["code"] == "job_not_found"
    assert call("GET", gateway.url + "/api/v1/jobs/not-a-uuid", key=raw).status == 404


def test_a_job_for_a_category_that_does_not_exist_is_refused_when_submitted(gateway: Gateway) -> None:
    _, raw = apikey_create(name="k")
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": "hi", "category": "nope"}, key=raw)
    assert reply.status == 404
    assert (reply.json()["error"]["code"], reply.json()["error"]["param"]) == ("category_not_found", "category")
    assert Job.objects.count() == 0


def test_a_job_whose_category_is_gone_when_it_runs_fails_instead_of_hanging(
    gateway: Gateway, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="k")
    # As if the category had been deleted between the submission and the run.
    submitted = job_submit(
        key=apikey_lookup(raw), owner_id=None, request={"prompt": "hi", "category": "gone"}, priority=0
    )
    job = wait_for_status(str(submitted.pk), "failed")
    assert job.error is not None and job.error["code"] == "category_not_found"
    events = sse_events(call("GET", f"{gateway.url}/api/v1/stream/{job.session_id}", key=raw))
    assert events == [{"type": "error", "error": job.error}]


def test_a_browser_session_submits_with_its_csrf_token_and_owns_the_job(admin_user: Any) -> None:
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    body = {"prompt": "hello there", "max_tokens": 3}

    refused = client.post("/api/v1/generate/async", body, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert refused.json()["error"]["message"].startswith("CSRF Failed")
    assert Job.objects.count() == 0

    client.get("/chat/")  # the page sets the CSRF cookie its script sends back
    token = client.cookies["csrftoken"].value
    accepted = client.post("/api/v1/generate/async", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 202
    assert accepted["Location"] == accepted.json()["status_url"]
    job = Job.objects.get(pk=accepted.json()["job_id"])
    assert (job.owner_id, job.api_key_id, job.request["prompt"]) == (admin_user.pk, None, "hello there")


def test_a_job_carries_the_conversation_before_its_prompt(
    gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    _, raw = apikey_create(name="k")
    turns = [{"role": "user", "content": "my name is Ada"}, {"role": "assistant", "content": "hello Ada"}]
    body = submit(gateway, raw, system="be brief", messages=turns, model="demo/demo-fast", max_tokens=3)
    job = wait_for_status(body["job_id"], "succeeded")
    assert job.request["messages"] == turns
    sent = fake.stats()["last"]
    assert isinstance(sent, dict)
    assert sent["demo-fast"]["messages"] == [
        {"role": "system", "content": "be brief"},
        *turns,
        {"role": "user", "content": "hello there"},
    ]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"role": "system", "content": "x"}], "messages[0].role must be one of user, assistant."),
        ([{"role": "user", "content": ""}], "messages[0].content must be a non-empty string."),
        (
            [{"role": "user", "content": "a", "name": "b"}],
            "messages[0] must be an object with exactly role and content.",
        ),
        (["hi"], "messages[0] must be an object with exactly role and content."),
        ("hi", 'Expected a list of items but got type "str".'),
    ],
)
def test_a_malformed_conversation_is_refused_and_nothing_is_queued(
    gateway: Gateway, messages: Any, message: str
) -> None:
    _, raw = apikey_create(name="k")
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": "hi", "messages": messages}, key=raw)
    assert reply.status == 400, reply.text
    error = reply.json()["error"]
    assert (error["message"], error["param"]) == (f"messages: {message}", "messages")
    assert Job.objects.count() == 0
