"""Upstreams that hang, talk garbage or break off, over real HTTP: the fake upstream behind a gateway of this
module's own (whose log must stay free of errors), on the three ways to generate — JSON, SSE, async job.

Before any output was sent a failing model is left for the next one in its chain (the first-token timeout
bounds a stream's wait, the total timeout a JSON call's); after output was sent the answer ends with a
clean error event, never a hang, never a 500. Garbage and cut-off answers are retryable failures: they
count against the model's breaker.

The prompt "explain why" routes to the reasoning chain, demo-smart then demo-fast; "hello" to the
conversation chain, demo-fast then demo-smart.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from websockets.sync.client import connect

from accounts.services import apikey_create
from jobs.models import Job
from ledger.models import UsageRecord
from routing.models import CircuitBreaker, Provider
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import Reply, call, sse_events

pytestmark = pytest.mark.django_db(transaction=True)

TOTAL_S, FIRST_TOKEN_S = 3.0, 0.5
SMART, FAST = "demo/demo-smart", "demo/demo-fast"


@pytest.fixture
def gateway(logged_gateway: Gateway) -> Gateway:
    Provider.objects.filter(name="demo").update(timeout_s=TOTAL_S, first_token_timeout_s=FIRST_TOKEN_S)
    routing_changed()
    return logged_gateway


@pytest.fixture
def raw(gateway: Gateway) -> str:
    return apikey_create(name="k")[1]


def generate(gateway: Gateway, raw: str, prompt: str, *, stream: bool, request_id: str = "") -> Reply:
    headers = {"X-Request-ID": request_id} if request_id else {}
    body = {"prompt": prompt, "max_tokens": 8, "stream": stream}
    return call("POST", gateway.url + "/api/v1/generate", body, key=raw, headers=headers, timeout=60)


def chat(gateway: Gateway, raw: str, prompt: str, *, stream: bool) -> Reply:
    body = {"model": "router", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, "stream": stream}
    return call("POST", gateway.url + "/v1/chat/completions", body, key=raw, timeout=60)


def run_job(gateway: Gateway, raw: str, prompt: str) -> tuple[Job, list[dict[str, Any]]]:
    """Submit a job, read its stream over the WebSocket to the end; the finished job and the messages."""
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": prompt, "max_tokens": 8}, key=raw)
    assert reply.status == 202, reply.text
    accepted = reply.json()
    url = gateway.url.replace("http://", "ws://") + accepted["ws_url"]
    messages: list[dict[str, Any]] = []
    with connect(url, additional_headers={"Authorization": f"Bearer {raw}"}, open_timeout=10) as ws:
        while not messages or messages[-1]["type"] not in ("complete", "error"):
            messages.append(json.loads(ws.recv(timeout=60)))
    assert wait_until(lambda: Job.objects.get(pk=accepted["job_id"]).finished_at is not None, timeout=10)
    return Job.objects.get(pk=accepted["job_id"]), messages


def attempts(meta_or_error: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(model, outcome, the error's code) of each attempt."""
    return [(a["model"], a["outcome"], a.get("error", "").partition(":")[0]) for a in meta_or_error["attempts"]]


def words(text: str) -> int:
    return len(text.split())


# --- hangs ------------------------------------------------------------------------------------------------


def breaker(model: str) -> tuple[str, int]:
    row = CircuitBreaker.objects.get(model__name=model)
    return row.state, row.consecutive_failures


def test_a_json_call_to_a_model_that_hangs_is_left_for_the_next_at_the_total_timeout(
    gateway: Gateway, fake: Fake, raw: str
) -> None:
    fake.configure(**{"demo-smart": {"hang": 1}})
    meta = generate(gateway, raw, "explain why", stream=False).json()["meta"]
    assert (meta["model"], attempts(meta)) == ("demo/demo-fast", [(SMART, "error", "timeout"), (FAST, "ok", "")])
    assert meta["attempts"][0]["error"] == "timeout: provider 'demo' timed out (total)"
    reply = chat(gateway, raw, "explain why", stream=False)
    assert (reply.status, reply.headers["x-spignos-route"]) == (200, "reasoning/demo/demo-fast/2")
    assert fake.stats()["requests"] == {"demo-smart": 2, "demo-fast": 2}
    assert breaker("demo-smart") == ("closed", 2)


@pytest.mark.parametrize("behaviour", [{"hang": 1}, {"ttft_ms": 60_000}], ids=["no-headers", "headers-then-silence"])
def test_a_stream_from_a_model_that_hangs_before_its_first_token_is_left_for_the_next(
    gateway: Gateway, fake: Fake, raw: str, celery_worker: subprocess.Popen[bytes], behaviour: dict[str, Any]
) -> None:
    fake.configure(**{"demo-smart": behaviour})
    # The first-token timeout fires, long before the total one; nothing had been sent yet.
    events = sse_events(generate(gateway, raw, "explain why", stream=True))
    assert [e["type"] for e in events] == ["chunk"] * 8 + ["complete"]
    assert attempts(events[-1]["meta"]) == [(SMART, "error", "timeout"), (FAST, "ok", "")]
    assert events[-1]["meta"]["attempts"][0]["error"] == "timeout: provider 'demo' timed out (first_token)"
    # The OpenAI door says who answered.
    reply = chat(gateway, raw, "explain why", stream=True)
    assert (reply.status, reply.headers["x-spignos-route"]) == (200, "reasoning/demo/demo-fast/2")
    assert sse_events(reply)[-1] == "[DONE]"
    # An async job streams too.
    job, messages = run_job(gateway, raw, "explain why")
    assert [m["type"] for m in messages] == ["chunk"] * 8 + ["complete"]
    assert (job.status, job.deliveries, words(job.output)) == ("succeeded", 1, 8)
    assert job.meta is not None and attempts(job.meta) == [(SMART, "error", "timeout"), (FAST, "ok", "")]
    assert fake.stats()["requests"] == {"demo-smart": 3, "demo-fast": 3}
    assert breaker("demo-smart") == ("open", 3)


def test_a_stream_that_stalls_after_its_first_tokens_ends_with_an_error_at_the_total_timeout(
    gateway: Gateway, fake: Fake, raw: str, celery_worker: subprocess.Popen[bytes]
) -> None:
    fake.configure(**{"demo-fast": {"hang_after": 3}})  # three tokens, then silence
    error = {
        "message": "The upstream stream failed: provider 'demo' timed out (total)",
        "type": "upstream_error",
        "code": "timeout",
        "param": None,
    }
    events = sse_events(generate(gateway, raw, "hello", stream=True, request_id="req-stalled"))
    assert events[:3] == [{"type": "chunk", "content": events[i]["content"]} for i in range(3)]
    assert events[3:] == [{"type": "error", "error": error}]
    assert wait_until(lambda: UsageRecord.objects.filter(request_id="req-stalled").exists(), timeout=10)
    row = UsageRecord.objects.get(request_id="req-stalled")
    assert (row.status, row.error_code, row.model, row.completion_tokens) == ("error", "timeout", "demo/demo-fast", 3)

    openai_events = sse_events(chat(gateway, raw, "hello", stream=True))  # the opening chunk, three tokens
    assert [bool(e.get("choices")) for e in openai_events] == [True] * 4 + [False]
    assert openai_events[-1]["error"]["code"] == "timeout"  # in-stream: the SDK raises APIError with it

    job, messages = run_job(gateway, raw, "hello")
    assert [m["type"] for m in messages] == ["chunk"] * 3 + ["error"]
    assert messages[-1]["error"] == error
    assert (job.status, job.deliveries, job.error, words(job.output)) == ("failed", 1, error, 3)
    # Once a token was sent there is no fallback (it would repeat the answer).
    assert fake.stats()["requests"] == {"demo-fast": 3}


# --- garbage and cut-off answers ----------------------------------------------------------------------------

JSON_GARBAGE = {
    "truncated-json": {"garbage": 1},
    "html-page": {"garbage": 2},
    "wrong-shape": {"garbage": 3},
    "cut-connection": {"truncate_after": 0},
}
STREAM_GARBAGE_BEFORE_OUTPUT = {
    "html-page": {"garbage": 2},
    "wrong-shape-chunks": {"garbage": 3},
    "data-not-json": {"garbage": 4},
    "cut-before-a-chunk": {"truncate_after": 0},
}
STREAM_GARBAGE_AFTER_OUTPUT = {
    "broken-chunk": ({"garbage": 1}, 1),
    "cut-after-two-chunks": ({"truncate_after": 2}, 2),
}


@pytest.mark.parametrize("behaviour", JSON_GARBAGE.values(), ids=JSON_GARBAGE.keys())
def test_a_json_answer_that_is_garbage_is_left_for_the_next_model(
    gateway: Gateway, fake: Fake, raw: str, behaviour: dict[str, Any]
) -> None:
    fake.configure(**{"demo-smart": behaviour})
    reply = generate(gateway, raw, "explain why", stream=False)
    assert reply.status == 200, reply.text
    meta = reply.json()["meta"]
    assert (meta["model"], attempts(meta)) == (
        "demo/demo-fast",
        [(SMART, "error", "invalid_response"), (FAST, "ok", "")],
    )
    completion = chat(gateway, raw, "explain why", stream=False)
    assert completion.status == 200
    assert (completion.json()["model"], completion.headers["x-spignos-route"]) == (
        "demo/demo-fast",
        "reasoning/demo/demo-fast/2",
    )
    assert breaker("demo-smart") == ("closed", 2)  # retryable: it counts against the model's breaker


def test_garbage_from_every_model_is_a_502_naming_each_attempt(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-smart": {"garbage": 2}, "demo-fast": {"garbage": 3}})
    reply = generate(gateway, raw, "explain why", stream=False)
    assert reply.status == 502
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "all_models_failed")
    assert attempts(error) == [(SMART, "error", "invalid_response"), (FAST, "error", "invalid_response")]
    streamed = generate(gateway, raw, "explain why", stream=True)
    assert streamed.status == 502  # nothing was sent: still a plain HTTP error
    assert streamed.json()["error"]["code"] == "all_models_failed"


@pytest.mark.parametrize("behaviour", STREAM_GARBAGE_BEFORE_OUTPUT.values(), ids=STREAM_GARBAGE_BEFORE_OUTPUT.keys())
def test_a_stream_that_is_garbage_before_any_output_is_left_for_the_next_model(
    gateway: Gateway, fake: Fake, raw: str, celery_worker: subprocess.Popen[bytes], behaviour: dict[str, Any]
) -> None:
    fake.configure(**{"demo-smart": behaviour})
    events = sse_events(generate(gateway, raw, "explain why", stream=True))
    assert [e["type"] for e in events] == ["chunk"] * 8 + ["complete"]
    assert attempts(events[-1]["meta"]) == [(SMART, "error", "invalid_response"), (FAST, "ok", "")]

    job, messages = run_job(gateway, raw, "explain why")
    assert [m["type"] for m in messages] == ["chunk"] * 8 + ["complete"]
    assert job.status == "succeeded" and job.meta is not None
    assert attempts(job.meta) == [(SMART, "error", "invalid_response"), (FAST, "ok", "")]
    assert breaker("demo-smart") == ("closed", 2)


@pytest.mark.parametrize(
    ("behaviour", "sent"), STREAM_GARBAGE_AFTER_OUTPUT.values(), ids=STREAM_GARBAGE_AFTER_OUTPUT.keys()
)
def test_a_stream_that_breaks_off_after_output_ends_with_an_error_event(
    gateway: Gateway, fake: Fake, raw: str, celery_worker: subprocess.Popen[bytes], behaviour: dict[str, Any], sent: int
) -> None:
    fake.configure(**{"demo-fast": behaviour})
    events = sse_events(generate(gateway, raw, "hello", stream=True))
    assert [e["type"] for e in events] == ["chunk"] * sent + ["error"]
    error = events[-1]["error"]
    assert (error["type"], error["code"], error["param"]) == ("upstream_error", "invalid_response", None)
    assert error["message"].startswith("The upstream stream failed: ")

    openai_events = sse_events(chat(gateway, raw, "hello", stream=True))  # the opening chunk, then what was sent
    assert [bool(e.get("choices")) for e in openai_events] == [True] * (1 + sent) + [False]
    assert openai_events[-1]["error"]["code"] == "invalid_response"

    job, messages = run_job(gateway, raw, "hello")
    assert [m["type"] for m in messages] == ["chunk"] * sent + ["error"]
    assert (job.status, job.deliveries, job.error) == ("failed", 1, messages[-1]["error"])
    assert job.output == "".join(m["content"] for m in messages[:-1])
    assert fake.stats()["requests"] == {"demo-fast": 3}  # no fallback once output was sent
