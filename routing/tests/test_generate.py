"""/api/v1/generate over real HTTP: routing, fallback, meta, streaming, usage rows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.services import apikey_create
from ledger.models import UsageRecord
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import call, sse_events

pytestmark = pytest.mark.django_db(transaction=True)


def usage_rows(request_id: str) -> list[UsageRecord]:
    wait_until(lambda: UsageRecord.objects.filter(request_id=request_id).exists(), timeout=10)
    return list(UsageRecord.objects.filter(request_id=request_id))


def test_it_generates_through_the_code_chain(gateway: Gateway, fake: Fake) -> None:
    key, raw = apikey_create(name="k")
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate",
        {"prompt": "Fix this python function", "max_tokens": 5, "user_id": "u-1"},
        key=raw,
        headers={"X-Request-ID": "req-code-1"},
    )
    assert reply.status == 200, reply.text
    body = reply.json()
    meta = body["meta"]
    assert len(body["output"].split()) == 5
    assert meta["model"] == "demo/demo-smart"
    assert meta["provider"] == "demo"
    assert meta["category"] == "code"
    assert meta["route_mode"] == "keywords"
    assert meta["attempts"] == [{"model": "demo/demo-smart", "outcome": "ok"}]
    assert meta["completion_tokens"] == 5
    assert meta["tokens_used"] == meta["prompt_tokens"] + 5
    assert meta["request_id"] == "req-code-1"
    assert reply.headers["x-request-id"] == "req-code-1"
    # demo-smart: $1 / $4 per million tokens, 0.30 kWh per million tokens, grid 475 g/kWh
    expected_cost = (meta["prompt_tokens"] * 1.0 + 5 * 4.0) / 1_000_000
    assert meta["cost_usd"] == pytest.approx(expected_cost, abs=1e-12)
    assert meta["energy_wh"] == pytest.approx(meta["tokens_used"] / 1e6 * 0.30 * 1000)
    assert meta["co2e_g"] == pytest.approx(meta["energy_wh"] / 1000 * 475)
    assert meta["response_time"].endswith("s")

    [row] = usage_rows("req-code-1")
    assert row.api_key_id == key.pk
    assert (row.user_id, row.endpoint, row.category, row.model, row.status) == (
        "u-1",
        "generate",
        "code",
        "demo/demo-smart",
        "ok",
    )
    assert (row.prompt_tokens, row.completion_tokens) == (meta["prompt_tokens"], 5)
    assert row.cost_usd == Decimal(str(round(expected_cost, 8))).quantize(Decimal("1e-8"))
    assert row.energy_kwh_per_m == 0.30
    assert row.attempts == [{"model": "demo/demo-smart", "outcome": "ok"}]


def test_it_falls_back_on_a_5xx_and_lists_the_attempts(gateway: Gateway, fake: Fake) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-smart": {"status": 503}})
    reply = call("POST", gateway.url + "/api/v1/generate", {"prompt": "explain why", "max_tokens": 3}, key=raw)
    assert reply.status == 200, reply.text
    meta = reply.json()["meta"]
    assert meta["category"] == "reasoning"
    assert meta["model"] == "demo/demo-fast"
    assert [a["outcome"] for a in meta["attempts"]] == ["error", "ok"]
    assert meta["attempts"][0]["model"] == "demo/demo-smart"
    assert "HTTP 503" in meta["attempts"][0]["error"]


def test_it_answers_502_with_every_attempt_when_the_whole_chain_fails(gateway: Gateway, fake: Fake) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"*": {"status": 500}})
    reply = call("POST", gateway.url + "/api/v1/generate", {"prompt": "hello there"}, key=raw)
    assert reply.status == 502, reply.text
    error = reply.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "all_models_failed"
    assert [a["model"] for a in error["attempts"]] == ["demo/demo-fast", "demo/demo-smart"]


def test_it_streams_chunks_then_complete(gateway: Gateway, fake: Fake) -> None:
    _, raw = apikey_create(name="k")
    reply = call("POST", gateway.url + "/api/v1/generate", {"prompt": "hi", "max_tokens": 4, "stream": True}, key=raw)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply)
    chunks = [e for e in events if e["type"] == "chunk"]
    assert len(chunks) == 4
    complete = events[-1]
    assert complete["type"] == "complete"
    assert complete["meta"]["completion_tokens"] == 4
    assert complete["meta"]["ttft_ms"] is not None
    assert len("".join(c["content"] for c in chunks).split()) == 4
    assert complete["meta"]["attempts"] == [{"model": "demo/demo-fast", "outcome": "ok"}]
    # The usage record keeps the stream's timings for the traffic percentiles (monitoring); tokens/s is not sent.
    [row] = usage_rows(complete["meta"]["request_id"])
    assert row.ttft_ms == complete["meta"]["ttft_ms"]
    assert row.tokens_per_sec is not None and row.tokens_per_sec > 0
    assert "tokens_per_sec" not in complete["meta"] and "_tokens_per_sec" not in complete["meta"]


def test_it_refuses_a_request_without_a_key(gateway: Gateway) -> None:
    reply = call("POST", gateway.url + "/api/v1/generate", {"prompt": "hi"})
    assert reply.status == 401
    assert reply.json()["error"]["type"] == "authentication_error"


def test_it_rejects_an_out_of_range_temperature(gateway: Gateway) -> None:
    _, raw = apikey_create(name="k")
    reply = call("POST", gateway.url + "/api/v1/generate", {"prompt": "hi", "temperature": 3}, key=raw)
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "temperature"


def test_a_stream_the_client_leaves_is_booked_with_what_it_produced(gateway: Gateway, fake: Fake) -> None:
    import json
    import urllib.request

    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"hang_after": 2}})  # two tokens, then the upstream goes quiet
    request = urllib.request.Request(
        gateway.url + "/api/v1/generate",
        data=json.dumps({"prompt": "hi", "max_tokens": 8, "stream": True}).encode(),
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json", "X-Request-ID": "req-gone"},
    )
    response = urllib.request.urlopen(request, timeout=10)
    chunks: list[dict[str, str]] = []
    while len(chunks) < 2:
        line = response.readline().decode()
        if line.startswith("data: "):
            chunks.append(json.loads(line[6:]))
    response.close()

    [row] = usage_rows("req-gone")
    assert [c["type"] for c in chunks] == ["chunk", "chunk"]
    assert (row.status, row.error_code, row.completion_tokens, row.model) == (
        "cancelled",
        "client_disconnected",
        2,
        "demo/demo-fast",
    )


def test_a_complete_answer_the_client_leaves_is_booked_cancelled(gateway: Gateway, fake: Fake) -> None:
    import json
    import socket
    import time
    from urllib.parse import urlsplit

    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"hang_after": 0}})  # the upstream never answers
    body = json.dumps({"prompt": "hi", "max_tokens": 8}).encode()
    url = urlsplit(gateway.url)
    head = (
        f"POST /api/v1/generate HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {raw}\r\n"
        f"Content-Type: application/json\r\nX-Request-ID: req-left\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=10) as client:
        client.sendall(head.encode() + body)
        time.sleep(0.5)  # the gateway is waiting on the model: the client leaves

    [row] = usage_rows("req-left")
    assert (row.status, row.error_code, row.model, row.completion_tokens) == ("cancelled", "client_disconnected", "", 0)


def test_a_stream_that_breaks_after_tokens_books_them_and_ends_with_an_error(gateway: Gateway, fake: Fake) -> None:
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"error_after": 3}})
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate",
        {"prompt": "hi", "max_tokens": 8, "stream": True},
        key=raw,
        headers={"X-Request-ID": "req-broken"},
    )
    events = sse_events(reply)
    assert [e["type"] for e in events] == ["chunk", "chunk", "chunk", "error"]
    assert events[-1]["error"]["type"] == "upstream_error"
    [row] = usage_rows("req-broken")
    assert (row.status, row.completion_tokens) == ("error", 3)


def test_a_stream_read_up_to_its_done_event_is_booked_ok(gateway: Gateway, fake: Fake) -> None:
    # A door that ends its answer on the model's done event (Anthropic's message_stop) may lose its client right
    # then: the consumer stops reading at done, and the call, which succeeded, is booked ok.
    from ledger.buffer import usage_buffer
    from routing import gateway as gateway_module
    from spignosapi import loops

    call_ = gateway_module.generation_call(
        {"prompt": "hi", "max_tokens": 4, "model": "demo/demo-fast"},
        key=None,
        request_id="req-done",
        endpoint="generate",
        stream=True,
    )

    async def read_to_done() -> list[str]:
        seen: list[str] = []
        async with gateway_module.streaming(call_) as stream:
            async for event in stream:
                seen.append(event.type)
                if event.type == "done":
                    break
        return seen

    seen = loops.run(read_to_done())
    usage_buffer.flush()

    [row] = usage_rows("req-done")
    assert seen == ["delta"] * 4 + ["done"]
    assert (row.status, row.error_code, row.model, row.completion_tokens) == ("ok", "", "demo/demo-fast", 4)
