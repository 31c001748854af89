"""The fake upstream, over real HTTP on loopback: the official openai SDK, urllib and aiohttp as clients."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from llm.fake_upstream import VOCABULARY, FakeUpstream, create_app, parse_knob
from llm.tokens import count_message_tokens, count_tokens

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something."}]
WEATHER_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "celsius": {"type": "boolean"},
                    "lat": {"type": ["number", "null"]},
                    "extra": {"type": "object"},
                    "optional": {"type": "string"},
                },
                "required": ["city", "days", "celsius", "lat", "extra"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]
WEATHER_ARGS = {"city": "fake", "days": 1, "celsius": True, "lat": 1, "extra": None}


# ----------------------------------------------------------------------------------------------- helpers


class Reply:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def sse(self) -> list[str]:
        """The ``data:`` payloads of an SSE body, in order."""
        return [
            line[len("data: ") :]
            for block in self.body.decode().split("\n\n")
            for line in block.split("\n")
            if line.startswith("data: ")
        ]

    def events(self) -> list[tuple[str, Any]]:
        """Anthropic SSE: (event name, parsed data) pairs."""
        out: list[tuple[str, Any]] = []
        for block in self.body.decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
            if "event" in lines:
                out.append((lines["event"], json.loads(lines["data"])))
        return out


def call(
    url: str,
    path: str,
    body: Any = None,
    *,
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> Reply:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        url + path,
        data=data,
        method=method or ("GET" if data is None else "POST"),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def chat(url: str, model: str, **extra: Any) -> Reply:
    headers = extra.pop("headers", None)
    return call(url, "/v1/chat/completions", {"model": model, "messages": USER, **extra}, headers=headers)


def anthropic(url: str, model: str, **extra: Any) -> Reply:
    body = {"model": model, "max_tokens": 256, "messages": USER, **extra}
    headers = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
    return call(url, "/v1/messages", body, headers=headers)


def configure(url: str, models: Mapping[str, Any]) -> Reply:
    return call(url, "/_fake/models", models)


@pytest.fixture
def client(fake_reset: str) -> Iterator[OpenAI]:
    sdk = OpenAI(base_url=fake_reset + "/v1", api_key="test-key", max_retries=0, timeout=10)
    yield sdk
    sdk.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------------------- chat, JSON


def test_it_answers_chat_completions_for_the_openai_sdk(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="demo-fast", messages=USER)

    choice = reply.choices[0]
    text = choice.message.content or ""
    assert reply.model == "demo-fast"
    assert reply.object == "chat.completion"
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert len(text.split(" ")) == 16
    assert all(word in VOCABULARY for word in text.split(" "))
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 16 == count_tokens(text, "gpt-4") == count_tokens(text, "gpt-4o")
    assert reply.usage.prompt_tokens == count_message_tokens(USER, "demo-fast")
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 16


def test_prompt_tokens_use_the_models_encoding_when_known(fake_reset: str) -> None:
    messages = [{"role": "user", "content": "日本語のテキスト and more"}]
    body = call(fake_reset, "/v1/chat/completions", {"model": "gpt-4o", "messages": messages}).json()
    assert body["usage"]["prompt_tokens"] == count_message_tokens(messages, "gpt-4o")
    assert count_message_tokens(messages, "gpt-4o") != count_message_tokens(messages, "gpt-4")


def test_tokens_sets_the_length_and_max_tokens_caps_it(client: OpenAI) -> None:
    short = client.chat.completions.create(model="demo@tokens=5", messages=USER)
    capped = client.chat.completions.create(
        model="demo@tokens=5",
        messages=USER,
        max_tokens=3,
    )
    empty = client.chat.completions.create(model="demo@tokens=0", messages=USER)

    assert short.usage is not None and short.usage.completion_tokens == 5
    assert short.choices[0].finish_reason == "stop"
    assert capped.usage is not None and capped.usage.completion_tokens == 3
    assert capped.choices[0].finish_reason == "length"
    assert (short.choices[0].message.content or "").startswith(capped.choices[0].message.content or "")
    assert empty.choices[0].message.content == ""


def test_max_completion_tokens_caps_too(fake_reset: str) -> None:
    body = chat(fake_reset, "demo", max_completion_tokens=2).json()
    assert body["usage"]["completion_tokens"] == 2
    assert body["choices"][0]["finish_reason"] == "length"


# ------------------------------------------------------------------------------------------ chat, SSE


def test_it_streams_with_include_usage(client: OpenAI) -> None:
    whole = client.chat.completions.create(model="demo-fast", messages=USER)
    chunks = list(
        client.chat.completions.create(
            model="demo-fast",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.object == "chat.completion.chunk" and chunk.model == "demo-fast" for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].message.content
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 16  # one token per chunk
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 16
    assert chunks[-1].usage == whole.usage


def test_the_stream_ends_with_done_and_has_no_usage_chunk_unless_asked(fake_reset: str) -> None:
    plain = chat(fake_reset, "demo@tokens=3", stream=True)
    asked = chat(fake_reset, "demo@tokens=3", stream=True, stream_options={"include_usage": True})

    assert plain.status == 200
    assert plain.headers["Content-Type"].startswith("text/event-stream")
    assert plain.sse()[-1] == "[DONE]"
    assert all("usage" not in json.loads(data) for data in plain.sse()[:-1])
    assert len(plain.sse()) == 3 + 1 + 1  # 3 tokens, the finish chunk, [DONE]
    usage_chunk = json.loads(asked.sse()[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3


# ------------------------------------------------------------------------------------------------ tools


def test_it_calls_the_first_tool_filling_required_arguments(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="demo-fast",
        messages=USER,
        tools=WEATHER_TOOLS,
    )

    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    tool_call = choice.message.tool_calls[0]
    assert tool_call.type == "function"
    assert tool_call.id.startswith("call_")
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == WEATHER_ARGS
    assert reply.usage is not None
    assert reply.usage.completion_tokens == count_tokens("get_weather" + tool_call.function.arguments)


def test_tool_choice_names_the_tool_or_turns_tools_off(fake_reset: str) -> None:
    named = chat(
        fake_reset,
        "demo",
        tools=WEATHER_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    ).json()
    none = chat(fake_reset, "demo", tools=WEATHER_TOOLS, tool_choice="none").json()
    ignored = chat(fake_reset, "demo@tool=0", tools=WEATHER_TOOLS).json()
    missing_tool = {"type": "function", "function": {"name": "x"}}
    unknown = chat(fake_reset, "demo", tools=WEATHER_TOOLS, tool_choice=missing_tool)

    call_ = named["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call_ == {"name": "get_time", "arguments": "{}"}
    assert none["choices"][0]["finish_reason"] == "stop"
    assert ignored["choices"][0]["finish_reason"] == "stop"
    assert unknown.status == 400
    assert unknown.json()["error"]["param"] == "tool_choice"


def test_it_streams_a_tool_call_in_openai_deltas(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="demo-fast",
            messages=USER,
            tools=WEATHER_TOOLS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) == 3
    first = deltas[0][0]
    assert first.index == 0 and first.id is not None and first.id.startswith("call_")
    assert first.function is not None and first.function.name == "get_weather"
    parts = [d[0].function.arguments for d in deltas[1:] if d[0].function is not None]
    assert all(parts) and len(parts) == 2
    assert all(d[0].id is None for d in deltas[1:])
    assert json.loads("".join(p or "" for p in parts)) == WEATHER_ARGS
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


# ------------------------------------------------------------------------------------ embeddings, models


def test_it_embeds_in_base64_and_float_identically(client: OpenAI) -> None:
    default = client.embeddings.create(model="demo-embed", input=["alpha", "beta"])  # SDK asks for base64
    floats = client.embeddings.create(model="demo-embed", input=["alpha", "beta"], encoding_format="float")

    single = client.embeddings.create(model="demo-embed", input="alpha")
    assert single.data[0].embedding == floats.data[0].embedding
    assert [d.index for d in floats.data] == [0, 1]
    assert default.data[0].embedding == floats.data[0].embedding
    assert default.data[1].embedding != default.data[0].embedding
    for item in floats.data:
        assert len(item.embedding) == 64
        assert abs(sum(x * x for x in item.embedding) - 1.0) < 1e-5
    assert floats.model == "demo-embed"
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 2


def test_embedding_size_comes_from_dim_or_dimensions(fake_reset: str) -> None:
    by_knob = call(fake_reset, "/v1/embeddings", {"model": "e@dim=8", "input": "x"}).json()
    by_param = call(fake_reset, "/v1/embeddings", {"model": "e@dim=8", "input": "x", "dimensions": 12}).json()
    tokens = call(fake_reset, "/v1/embeddings", {"model": "e", "input": [[1, 2, 3], [4]]}).json()
    bad = call(fake_reset, "/v1/embeddings", {"model": "e", "input": [{"x": 1}]})

    assert len(by_knob["data"][0]["embedding"]) == 8
    assert len(by_param["data"][0]["embedding"]) == 12
    assert tokens["usage"]["prompt_tokens"] == 4
    assert bad.status == 400 and bad.json()["error"]["param"] == "input"


def test_embeddings_depend_on_model_and_text_only(fake_reset: str) -> None:
    def vector(model: str, text: str, **headers: str) -> list[float]:
        reply = call(fake_reset, "/v1/embeddings", {"model": model, "input": text}, headers=headers)
        return list(reply.json()["data"][0]["embedding"])

    assert vector("m", "hello") == vector("m@latency_ms=1", "hello", **{"X-Fake-Usage": "0"})
    assert vector("m", "hello") != vector("n", "hello")
    assert vector("m", "hello") != vector("m", "hello!")


def test_it_lists_default_configured_and_seen_models(client: OpenAI, fake_reset: str) -> None:
    configure(fake_reset, {"configured-model": {"tokens": 2}})
    chat(fake_reset, "seen-model")

    ids = [model.id for model in client.models.list()]
    assert ids[:3] == ["demo-fast", "demo-smart", "demo-embed"]
    assert "configured-model" in ids and "seen-model" in ids
    assert client.models.retrieve("demo-smart").id == "demo-smart"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("never-heard-of")


# ------------------------------------------------------------------------------------------------- knobs


def test_latency_delays_the_response(fake_reset: str) -> None:
    start = time.perf_counter()
    assert chat(fake_reset, "demo", headers={"X-Fake-Latency-Ms": "120"}).status == 200
    assert time.perf_counter() - start >= 0.12


def test_ttft_delays_the_first_chunk_after_the_headers(fake_reset: str) -> None:
    start = time.perf_counter()
    request = urllib.request.Request(
        fake_reset + "/v1/chat/completions",
        data=json.dumps({"model": "demo@ttft_ms=150", "messages": USER, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        headers_at = time.perf_counter() - start
        first_line = response.readline()
        first_at = time.perf_counter() - start
        rest = response.read()
    assert first_line.startswith(b"data: ")
    assert first_at >= 0.15
    assert headers_at < first_at
    assert rest.endswith(b"data: [DONE]\n\n")


def test_tps_paces_the_tokens(fake_reset: str) -> None:
    start = time.perf_counter()
    reply = chat(fake_reset, "demo@tokens=6,tps=50", stream=True)
    # 5 gaps between 6 tokens at 50 tokens/s.
    assert time.perf_counter() - start >= 5 / 50
    assert len(reply.sse()) == 6 + 1 + 1


def test_a_status_alone_fails_every_request(client: OpenAI, fake_reset: str) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="demo@status=403", messages=USER)
    assert chat(fake_reset, "demo", headers={"X-Fake-Status": "503"}).status == 503
    assert chat(fake_reset, "demo", headers={"X-Fake-Status": "200"}).status == 200


def test_fail_first_fails_the_first_requests_of_that_model(fake_reset: str) -> None:
    statuses = [chat(fake_reset, "flaky@fail_first=2,status=503").status for _ in range(4)]
    other = chat(fake_reset, "flaky@fail_first=2").status  # another name, another counter

    assert statuses == [503, 503, 200, 200]
    assert other == 500


def test_fail_rate_is_deterministic_for_a_seed(fake_reset: str) -> None:
    def run() -> list[int]:
        return [chat(fake_reset, "flaky@fail_rate=0.5,status=502").status for _ in range(20)]

    first = run()
    call(fake_reset, "/_fake/reset", {})
    second = run()

    assert first == second
    assert set(first) == {200, 502}
    assert all(status == 200 for status in [chat(fake_reset, "ok@fail_rate=0").status for _ in range(5)])
    assert all(status == 500 for status in [chat(fake_reset, "bad@fail_rate=1").status for _ in range(5)])


def test_retry_after_is_sent_on_429_only(fake_reset: str) -> None:
    limited = chat(fake_reset, "demo@status=429,retry_after=2")
    fractional = chat(fake_reset, "demo@status=429,retry_after=1.5")
    server_error = chat(fake_reset, "demo@status=500,retry_after=2")

    assert limited.status == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert fractional.headers["Retry-After"] == "1.5"
    assert "Retry-After" not in server_error.headers


def test_the_sdk_sees_retry_after(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="demo@status=429,retry_after=7", messages=USER)
    assert caught.value.response.headers["retry-after"] == "7"


def test_hang_never_answers(fake_reset: str) -> None:
    start = time.perf_counter()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        chat_request = urllib.request.Request(
            fake_reset + "/v1/chat/completions",
            data=json.dumps({"model": "demo@hang=1", "messages": USER}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(chat_request, timeout=0.3)
    assert 0.3 <= time.perf_counter() - start < 3
    assert call(fake_reset, "/_fake/stats").json()["requests"]["demo@hang=1"] == 1


def test_hang_after_stops_the_stream_after_n_chunks(client: OpenAI) -> None:
    received: list[str] = []
    with pytest.raises(openai.APITimeoutError):
        stream = client.with_options(timeout=0.4).chat.completions.create(
            model="demo@hang_after=2",
            messages=USER,
            stream=True,
        )
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert len(received) == 2


def test_error_after_sends_an_error_event_mid_stream(client: OpenAI, fake_reset: str) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        stream = client.chat.completions.create(
            model="demo@error_after=3",
            messages=USER,
            stream=True,
        )
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert len(received) == 3
    raw = chat(fake_reset, "demo@error_after=1", stream=True).sse()
    assert len(raw) == 2 and json.loads(raw[1])["error"]["type"] == "server_error"


def test_garbage_is_a_200_that_does_not_parse(fake_reset: str) -> None:
    reply = chat(fake_reset, "demo@garbage=1")
    stream = chat(fake_reset, "demo@garbage=1", stream=True).sse()

    assert reply.status == 200
    with pytest.raises(json.JSONDecodeError):
        reply.json()
    assert json.loads(stream[0])["choices"][0]["delta"]["role"] == "assistant"
    with pytest.raises(json.JSONDecodeError):
        json.loads(stream[-1])
    assert "[DONE]" not in stream


def test_garbage_2_is_an_html_page_with_a_200(fake_reset: str) -> None:
    for reply in (chat(fake_reset, "demo@garbage=2"), chat(fake_reset, "demo@garbage=2", stream=True)):
        assert (reply.status, reply.headers["Content-Type"].split(";")[0]) == (200, "text/html")
        assert reply.body.startswith(b"<!DOCTYPE html>")
        assert reply.sse() == []


def test_garbage_3_is_json_of_another_apis_shape(fake_reset: str) -> None:
    reply = chat(fake_reset, "demo@garbage=3,tokens=3")
    stream = chat(fake_reset, "demo@garbage=3,tokens=3", stream=True).sse()

    body = reply.json()
    assert (reply.status, sorted(body), body["done"]) == (200, ["done", "model", "response"], True)
    assert len(body["response"].split()) == 3
    assert [json.loads(data)["done"] for data in stream[:-1]] == [False, False, False, True]
    assert "".join(json.loads(data)["response"] for data in stream[:-1]) == body["response"]
    assert stream[-1] == "[DONE]"


def test_garbage_4_streams_data_lines_that_are_not_json(fake_reset: str) -> None:
    stream = chat(fake_reset, "demo@garbage=4,tokens=3", stream=True).sse()

    assert len(stream) == 4 and stream[-1] == "[DONE]"
    for data in stream[:-1]:
        with pytest.raises(json.JSONDecodeError):
            json.loads(data)


def test_truncate_after_drops_the_connection_without_an_end(fake_reset: str) -> None:
    async def read(model: str, stream: bool) -> tuple[bytes, type[BaseException] | None]:
        received = b""
        async with aiohttp.ClientSession() as session:
            body = {"model": model, "messages": USER, "stream": stream}
            async with session.post(fake_reset + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
                try:
                    async for data in response.content.iter_any():
                        received += data
                except aiohttp.ClientPayloadError as exc:
                    return received, type(exc)
        return received, None

    streamed, stream_error = asyncio.run(read("demo@truncate_after=2", True))
    cut, json_error = asyncio.run(read("demo@truncate_after=0", False))

    assert stream_error is json_error is aiohttp.ClientPayloadError
    events = [block for block in streamed.decode().split("\n\n") if block]
    assert len(events) == 2
    assert all(json.loads(e.removeprefix("data: "))["choices"][0]["finish_reason"] is None for e in events)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut)
    assert cut.startswith(b'{"id":"chatcmpl-fake')


def test_usage_0_omits_usage(fake_reset: str) -> None:
    body = chat(fake_reset, "demo@usage=0").json()
    stream = chat(fake_reset, "demo@usage=0", stream=True, stream_options={"include_usage": True}).sse()

    assert "usage" not in body
    assert all("usage" not in json.loads(data) for data in stream[:-1])


def test_content_filter_stops_early_or_refuses_the_request(fake_reset: str) -> None:
    filtered = chat(fake_reset, "demo@content_filter=1").json()
    refused = chat(fake_reset, "demo@content_filter=2")

    assert filtered["choices"][0]["finish_reason"] == "content_filter"
    assert filtered["usage"]["completion_tokens"] == 8
    assert refused.status == 400
    assert refused.json()["error"]["code"] == "content_filter"


def test_stream_options_0_rejects_stream_options(fake_reset: str) -> None:
    rejected = chat(fake_reset, "old@stream_options=0", stream=True, stream_options={"include_usage": True})
    accepted = chat(fake_reset, "old@stream_options=0", stream=True)

    assert rejected.status == 400
    assert "stream_options" in rejected.json()["error"]["message"]
    assert accepted.status == 200


def test_knob_precedence_is_control_then_headers_then_name(fake_reset: str) -> None:
    def tokens(model: str, **headers: str) -> int:
        return int(chat(fake_reset, model, headers=headers).json()["usage"]["completion_tokens"])

    assert tokens("p@tokens=3") == 3
    assert tokens("p@tokens=3", **{"X-Fake-Tokens": "4"}) == 4
    configure(fake_reset, {"p": {"tokens": 5}})  # the base name covers p@...
    assert tokens("p@tokens=3", **{"X-Fake-Tokens": "4"}) == 5
    configure(fake_reset, {"p@tokens=3": {"tokens": 6}})  # the exact name wins over the base name
    assert tokens("p@tokens=3") == 6
    configure(fake_reset, {"*": {"tokens": 7}})
    assert tokens("q") == 7


def test_unknown_or_invalid_knobs_are_a_400(fake_reset: str) -> None:
    for reply in (
        chat(fake_reset, "demo@bogus=1"),
        chat(fake_reset, "demo@tokens"),
        chat(fake_reset, "demo", headers={"X-Fake-Fail-Rate": "2"}),
        chat(fake_reset, "demo", headers={"X-Fake-Tokens": "many"}),
        configure(fake_reset, {"demo": {"status": 99}}),
    ):
        assert reply.status == 400
        assert reply.json()["error"]["code"] == "fake_knob"


def test_knob_values_are_validated() -> None:
    assert parse_knob("hang", "true") == 1
    assert parse_knob("latency_ms", 12.5) == 12.5
    assert parse_knob("garbage", "4") == 4
    for name, raw in [("tokens", "1.5"), ("hang", 2), ("content_filter", 3), ("dim", 0), ("tps", -1), ("garbage", 5)]:
        with pytest.raises(ValueError):
            parse_knob(name, raw)


# -------------------------------------------------------------------------------------- errors, validation


@pytest.mark.parametrize(
    ("status", "kind", "exception"),
    [
        (400, "invalid_request_error", openai.BadRequestError),
        (401, "invalid_request_error", openai.AuthenticationError),
        (403, "permission_error", openai.PermissionDeniedError),
        (404, "invalid_request_error", openai.NotFoundError),
        (422, "invalid_request_error", openai.UnprocessableEntityError),
        (429, "requests", openai.RateLimitError),
        (500, "server_error", openai.InternalServerError),
        (503, "server_error", openai.InternalServerError),
    ],
)
def test_failures_use_the_openai_error_shape(
    client: OpenAI, fake_reset: str, status: int, kind: str, exception: type[openai.APIStatusError]
) -> None:
    reply = chat(fake_reset, f"demo@status={status}")
    streamed = chat(fake_reset, f"demo@status={status}", stream=True)

    assert reply.status == streamed.status == status
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == kind
    assert error["param"] is None
    assert isinstance(error["code"], str) and str(status) in error["message"]
    assert streamed.json()["error"]["type"] == kind
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model=f"demo@status={status}", messages=USER)
    assert caught.value.status_code == status


def test_malformed_requests_are_a_400(fake_reset: str) -> None:
    no_model = call(fake_reset, "/v1/chat/completions", {"messages": USER})
    no_messages = call(fake_reset, "/v1/chat/completions", {"model": "demo"})
    not_json = call(fake_reset, "/v1/chat/completions", b"{nope")
    bad_max_tokens = chat(fake_reset, "demo", max_tokens="ten")

    assert [r.status for r in (no_model, no_messages, not_json, bad_max_tokens)] == [400] * 4
    assert no_model.json()["error"]["param"] == "model"
    assert no_messages.json()["error"]["param"] == "messages"
    assert set(not_json.json()["error"]) == {"message", "type", "code", "param"}
    assert call(fake_reset, "/_fake/stats").json()["requests"] == {}


# ------------------------------------------------------------------------------------- control endpoints


def test_control_endpoints_configure_count_and_reset(fake_reset: str) -> None:
    configured = configure(fake_reset, {"m": {"tokens": 2, "latency_ms": None}})
    assert configured.json() == {"models": {"m": {"tokens": 2}}}
    assert call(fake_reset, "/_fake/models").json() == {"models": {"m": {"tokens": 2}}}
    chat(fake_reset, "m")
    chat(fake_reset, "m", temperature=0.2)
    chat(fake_reset, "other")

    stats = call(fake_reset, "/_fake/stats").json()
    assert stats["requests"] == {"m": 2, "other": 1}
    assert stats["last"]["m"] == {"model": "m", "messages": USER, "temperature": 0.2}

    assert call(fake_reset, "/_fake/models", method="DELETE").json() == {"models": {}}
    assert chat(fake_reset, "m").json()["usage"]["completion_tokens"] == 16

    configure(fake_reset, {"m": {"tokens": 2}})
    assert call(fake_reset, "/_fake/reset", {}).status == 200
    assert call(fake_reset, "/_fake/stats").json() == {"requests": {}, "last": {}, "total": 0}
    assert call(fake_reset, "/_fake/models").json() == {"models": {}}


def test_routes_work_without_v1_and_on_azure_paths(fake_reset: str) -> None:
    plain = call(fake_reset, "/chat/completions", {"model": "demo@tokens=2", "messages": USER}).json()
    azure = call(
        fake_reset,
        "/openai/deployments/my-gpt@tokens=3/chat/completions?api-version=2024-06-01",
        {"messages": USER},
    ).json()
    azure_embed_path = "/openai/deployments/emb/embeddings?api-version=2024-06-01"
    azure_embed = call(fake_reset, azure_embed_path, {"input": "x"}).json()

    assert plain["usage"]["completion_tokens"] == 2
    assert azure["model"] == "my-gpt@tokens=3" and azure["usage"]["completion_tokens"] == 3
    assert azure_embed["model"] == "emb"
    assert call(fake_reset, "/models").json()["object"] == "list"
    assert call(fake_reset, "/health").json() == {"status": "ok"}


# ----------------------------------------------------------------------------------------- determinism


def test_output_depends_on_seed_model_and_prompt_only(fake_reset: str) -> None:
    def text(url: str, model: str, prompt: str = "Say something.") -> str:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        return str(call(url, "/v1/chat/completions", body).json()["choices"][0]["message"]["content"])

    with FakeUpstream(seed=0) as same_seed, FakeUpstream(seed=1) as other_seed:
        assert text(same_seed.url, "demo") == text(fake_reset, "demo")
        assert text(other_seed.url, "demo") != text(fake_reset, "demo")
    assert text(fake_reset, "demo") == text(fake_reset, "demo@latency_ms=1")
    assert text(fake_reset, "demo") != text(fake_reset, "demo-smart")
    assert text(fake_reset, "demo") != text(fake_reset, "demo", "Say something else.")


def test_the_vocabulary_is_one_token_per_word() -> None:
    assert len(set(VOCABULARY)) == len(VOCABULARY)
    for model in ("gpt-4", "gpt-4o"):
        for word in VOCABULARY:
            assert count_tokens(word, model) == 1
            assert count_tokens(" " + word, model) == 1
        assert count_tokens(" ".join(VOCABULARY), model) == len(VOCABULARY)


# ------------------------------------------------------------------------------------------- anthropic


def test_it_answers_the_anthropic_messages_api(fake_reset: str) -> None:
    reply = anthropic(fake_reset, "claude-fake", system="Be brief.")
    capped = anthropic(fake_reset, "claude-fake", max_tokens=4)

    body = reply.json()
    assert reply.status == 200
    assert body["type"] == "message" and body["role"] == "assistant" and body["model"] == "claude-fake"
    assert body["id"].startswith("msg_")
    assert body["stop_reason"] == "end_turn"
    assert [block["type"] for block in body["content"]] == ["text"]
    assert count_tokens(body["content"][0]["text"]) == 16
    assert body["usage"]["output_tokens"] == 16
    prompt_tokens = count_message_tokens(USER, "claude-fake") + count_tokens("Be brief.")
    assert body["usage"]["input_tokens"] == prompt_tokens
    assert capped.json()["stop_reason"] == "max_tokens"
    assert capped.json()["usage"]["output_tokens"] == 4


def test_it_streams_anthropic_events(fake_reset: str) -> None:
    whole = anthropic(fake_reset, "claude-fake@tokens=3").json()
    events = anthropic(fake_reset, "claude-fake@tokens=3", stream=True).events()

    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == whole["content"][0]["text"]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"] == {"output_tokens": 3}


def test_it_calls_anthropic_tools_both_ways(fake_reset: str) -> None:
    tools = [
        {"name": "lookup", "description": "d", "input_schema": {"type": "object", "properties": {}}},
        {
            "name": "get_weather",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    ]
    choice = {"type": "tool", "name": "get_weather"}
    body = anthropic(fake_reset, "claude-fake", tools=tools, tool_choice=choice).json()
    events = anthropic(fake_reset, "claude-fake", tools=tools, tool_choice=choice, stream=True).events()
    none = anthropic(fake_reset, "claude-fake", tools=tools, tool_choice={"type": "none"}).json()

    assert body["stop_reason"] == "tool_use"
    assert body["content"] == [
        {"type": "tool_use", "id": body["content"][0]["id"], "name": "get_weather", "input": {"city": "fake"}}
    ]
    assert body["content"][0]["id"].startswith("toolu_")
    start = events[1][1]["content_block"]
    assert start == {"type": "tool_use", "id": body["content"][0]["id"], "name": "get_weather", "input": {}}
    parts = [data["delta"]["partial_json"] for name, data in events if name == "content_block_delta"]
    assert len(parts) == 2 and json.loads("".join(parts)) == {"city": "fake"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert none["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_anthropic_errors_use_the_anthropic_shape(fake_reset: str, status: int, kind: str) -> None:
    reply = anthropic(fake_reset, f"claude-fake@status={status},retry_after=3")

    assert reply.status == status
    assert reply.json() == {
        "type": "error",
        "error": {"type": kind, "message": reply.json()["error"]["message"]},
    }
    assert (reply.headers.get("Retry-After") == "3") is (status in (429, 529))


def test_anthropic_validation_and_stream_failures(fake_reset: str) -> None:
    missing = call(fake_reset, "/v1/messages", {"model": "claude-fake", "messages": USER})
    refusal = anthropic(fake_reset, "claude-fake@content_filter=1").json()
    garbage = anthropic(fake_reset, "claude-fake@garbage=1", stream=True)
    mid_stream = anthropic(fake_reset, "claude-fake@error_after=2", stream=True).events()

    assert missing.status == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in missing.json()["error"]["message"]
    assert refusal["stop_reason"] == "refusal"
    with pytest.raises(json.JSONDecodeError):
        garbage.events()
    assert [name for name, _ in mid_stream] == ["message_start", "content_block_start", "error"]
    assert mid_stream[-1][1]["error"]["type"] == "overloaded_error"


# -------------------------------------------------------------------------------- running it, throughput


def test_concurrent_clients_are_served_quickly(fake_reset: str) -> None:
    async def run() -> tuple[list[int], float]:
        body = {"model": "demo-fast", "messages": USER}
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.post(fake_reset + "/v1/chat/completions", json=body) as response:
                    await response.read()
                    return response.status

            start = time.perf_counter()
            statuses = await asyncio.gather(*(one() for _ in range(300)))
            return list(statuses), time.perf_counter() - start

    statuses, elapsed = asyncio.run(run())
    assert statuses == [200] * 300
    assert elapsed < 5  # about 0.1 s here; generous for a loaded CI machine


def test_stopping_does_not_wait_for_hanging_requests() -> None:
    fake = FakeUpstream()
    url = fake.start()
    worker = threading.Thread(target=lambda: chat(url, "demo@hang=1"), daemon=True)
    worker.start()
    deadline = time.monotonic() + 5
    while call(url, "/_fake/stats").json()["total"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    start = time.perf_counter()
    fake.stop()
    assert time.perf_counter() - start < 3
    fake.stop()  # idempotent
    worker.join(5)
    assert not worker.is_alive()


def test_create_app_is_an_aiohttp_application() -> None:
    app = create_app(seed=3)
    paths = {route.resource.canonical for route in app.router.routes() if route.resource is not None}
    assert {"/v1/messages", "/v1/chat/completions", "/embeddings", "/health"} <= paths


def test_the_cli_serves_on_the_given_port() -> None:
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "llm.fake_upstream", "--port", str(port), "--seed", "1"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert call(url, "/health", timeout=1).json() == {"status": "ok"}
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        with FakeUpstream(seed=1) as in_process:
            assert chat(url, "demo").json()["choices"] == chat(in_process.url, "demo").json()["choices"]
    finally:
        process.terminate()
        process.wait(10)
