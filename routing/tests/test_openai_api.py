"""The OpenAI-compatible front door, driven by the official ``openai`` SDK over real HTTP.

The demo provider points at the fake upstream, which is deterministic: asking it directly for the same
messages gives the exact text and usage the gateway must relay.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from accounts.services import apikey_create
from ledger.models import UsageRecord
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
CODE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Fix this python function"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def sdk(gateway: Gateway, raw_key: str, *, base_path: str = "/v1") -> OpenAI:
    return OpenAI(base_url=gateway.url + base_path, api_key=raw_key, max_retries=0, timeout=30)


def upstream_answer(fake: Fake, model: str, messages: Any, max_tokens: int) -> Any:
    """What the fake upstream itself answers: the text and usage the gateway must pass through unchanged."""
    direct = OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    return direct.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)


def usage_row(request_id: str) -> UsageRecord:
    wait_until(lambda: UsageRecord.objects.filter(request_id=request_id).exists(), timeout=10)
    return UsageRecord.objects.get(request_id=request_id)


def new_key(**limits: Any) -> str:
    return apikey_create(name="sdk", **limits)[1]


# --- non-streaming chat ----------------------------------------------------------------------------------


def test_it_completes_a_routed_chat_with_the_answering_model_and_exact_usage(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    raw = client.chat.completions.with_raw_response.create(
        model="router", messages=CODE, max_tokens=5, user="u-7", extra_headers={"X-Request-ID": "req-oa-1"}
    )
    completion = raw.parse()
    sent_upstream = fake.stats()["last"]["demo-smart"]  # type: ignore[index]
    expected = upstream_answer(fake, "demo-smart", CODE, 5)

    assert (sent_upstream["model"], sent_upstream["messages"], sent_upstream["user"]) == ("demo-smart", CODE, "u-7")
    assert raw.status_code == 200
    assert raw.headers["X-Spignos-Route"] == "code/demo/demo-smart/1"
    assert raw.headers["X-Request-ID"] == "req-oa-1"
    assert completion.id == "chatcmpl-req-oa-1"
    assert completion.object == "chat.completion"
    assert completion.model == "demo/demo-smart"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.choices[0].message.content
    assert len((choice.message.content or "").split()) == 5
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "length"  # the fake writes 16 tokens; max_tokens cut it at 5
    assert completion.usage is not None and expected.usage is not None
    assert completion.usage.prompt_tokens == expected.usage.prompt_tokens
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == expected.usage.prompt_tokens + 5

    row = usage_row("req-oa-1")
    assert (row.endpoint, row.category, row.model, row.status, row.stream, row.user_id) == (
        "chat.completions",
        "code",
        "demo/demo-smart",
        "ok",
        False,
        "u-7",
    )
    assert (row.prompt_tokens, row.completion_tokens) == (expected.usage.prompt_tokens, 5)


def test_it_ends_with_stop_when_the_answer_fits(gateway: Gateway, fake: Fake) -> None:
    completion = sdk(gateway, new_key()).chat.completions.create(model="router", messages=HELLO, max_tokens=50)
    assert completion.model == "demo/demo-fast"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 16
    assert len(completion.choices[0].message.content.split()) == 16  # type: ignore[union-attr]


def test_it_honours_max_completion_tokens(gateway: Gateway, fake: Fake) -> None:
    completion = sdk(gateway, new_key()).chat.completions.create(
        model="router", messages=HELLO, max_completion_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("model", "route", "answered_by"),
    [
        ("router", "conversation/demo/demo-fast/1", "demo/demo-fast"),
        ("auto", "conversation/demo/demo-fast/1", "demo/demo-fast"),
        ("code", "code/demo/demo-smart/1", "demo/demo-smart"),
        ("demo/demo-fast", "-/demo/demo-fast/1", "demo/demo-fast"),
        ("demo/demo-smart", "-/demo/demo-smart/1", "demo/demo-smart"),
    ],
)
def test_it_routes_by_the_model_field(gateway: Gateway, fake: Fake, model: str, route: str, answered_by: str) -> None:
    raw = sdk(gateway, new_key()).chat.completions.with_raw_response.create(model=model, messages=HELLO, max_tokens=3)
    completion = raw.parse()
    assert raw.headers["X-Spignos-Route"] == route
    assert completion.model == answered_by
    assert (
        completion.choices[0].message.content
        == upstream_answer(fake, answered_by.removeprefix("demo/"), HELLO, 3).choices[0].message.content
    )


def test_it_raises_not_found_for_an_unknown_model(gateway: Gateway, fake: Fake) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway, new_key()).chat.completions.create(model="nope/nothing", messages=HELLO)
    error = caught.value
    assert error.status_code == 404
    assert (error.code, error.param, error.type) == ("model_not_found", "model", "not_found_error")
    assert error.body["message"] == "The model 'nope/nothing' does not exist."  # type: ignore[index]
    assert error.message == "Error code: 404 - The model 'nope/nothing' does not exist."
    assert fake.stats()["requests"] == {}


def test_it_also_answers_on_the_alias_without_v1(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key(), base_path="")
    raw = client.chat.completions.with_raw_response.create(model="router", messages=HELLO, max_tokens=4)
    completion = raw.parse()
    assert str(raw.http_request.url) == gateway.url + "/chat/completions"
    assert raw.headers["X-Spignos-Route"] == "conversation/demo/demo-fast/1"
    assert completion.model == "demo/demo-fast"
    assert (
        completion.choices[0].message.content == upstream_answer(fake, "demo-fast", HELLO, 4).choices[0].message.content
    )


def test_it_lists_the_router_the_categories_and_the_models(gateway: Gateway) -> None:
    models = list(sdk(gateway, new_key()).models.list())
    assert [m.id for m in models] == [
        "router",
        "auto",
        "code",
        "conversation",
        "reasoning",
        "tools",
        "demo/demo-embed",
        "demo/demo-fast",
        "demo/demo-smart",
        "local/all-minilm-l6-v2",
    ]
    assert {m.object for m in models} == {"model"}
    assert [m.owned_by for m in models][-4:] == ["demo", "demo", "demo", "local"]


# --- streaming -------------------------------------------------------------------------------------------


def test_it_streams_chunks_then_a_usage_chunk(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    raw = client.chat.completions.with_raw_response.create(
        model="router",
        messages=HELLO,
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Request-ID": "req-oa-stream"},
    )
    chunks = list(raw.parse())
    expected = upstream_answer(fake, "demo-fast", HELLO, 6)

    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["X-Spignos-Route"] == "conversation/demo/demo-fast/1"
    assert {c.model for c in chunks} == {"demo/demo-fast"}
    assert {c.id for c in chunks} == {"chatcmpl-req-oa-stream"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    opening, *content_chunks, finish_chunk, usage_chunk = chunks
    assert (opening.choices[0].delta.role, opening.choices[0].delta.content) == ("assistant", "")
    assert [c.choices[0].delta.role for c in content_chunks] == [None] * len(content_chunks)
    assert "".join(c.choices[0].delta.content or "" for c in content_chunks) == expected.choices[0].message.content
    assert [c.choices[0].finish_reason for c in content_chunks] == [None] * len(content_chunks)
    assert finish_chunk.choices[0].finish_reason == "length"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and expected.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens, usage_chunk.usage.total_tokens) == (
        expected.usage.prompt_tokens,
        6,
        expected.usage.prompt_tokens + 6,
    )
    assert all(c.usage is None for c in chunks[:-1])

    row = usage_row("req-oa-stream")
    assert (row.model, row.status, row.stream, row.completion_tokens) == ("demo/demo-fast", "ok", True, 6)


def test_it_streams_without_a_usage_chunk_unless_asked(gateway: Gateway, fake: Fake) -> None:
    chunks = list(
        sdk(gateway, new_key()).chat.completions.create(model="router", messages=HELLO, max_tokens=3, stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)


# Published reference: a chat completion streamed by OpenAI's API, byte for byte as openai-python's test suite
# recorded it from the live API (tests/lib/chat/test_completions_streaming.py, test_parse_nothing; the file
# .inline-snapshot/external/e2aad469….bin of 2024-09-26, named by its SHA-256, which this copy keeps): one
# ``data:`` line per chunk and a blank line after it, the finish_reason chunk, the usage chunk with empty
# choices (what ``stream_options.include_usage`` adds, per OpenAI's API reference), then ``data: [DONE]``.
OPENAI_REFERENCE_CHAT_STREAM = (Path(__file__).parent / "fixtures" / "openai_chat_stream.sse").read_bytes()
SSE_DATA = re.compile(rb"data: ([^\n]+)\n\n")


def data_events(raw: bytes) -> list[Any]:
    """The payload of each ``data:`` event (``[DONE]`` as the string); asserts the bytes are nothing else."""
    assert b"".join(m.group(0) for m in SSE_DATA.finditer(raw)) == raw
    return [data.decode() if data == b"[DONE]" else json.loads(data) for data in SSE_DATA.findall(raw)]


def test_the_stream_bytes_match_openais_published_reference(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"tokens": 3}})
    body = {
        "model": "demo/demo-fast",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    reply = call("POST", gateway.url + "/v1/chat/completions", body, key=new_key(), headers={"X-Request-ID": "req-ref"})
    assert (reply.status, reply.headers["content-type"]) == (200, "text/event-stream")
    *ours, our_usage, our_done = data_events(reply.text.encode())
    *reference, reference_usage, reference_done = data_events(OPENAI_REFERENCE_CHAT_STREAM)
    assert our_done == reference_done == "[DONE]"

    # Every chunk has the reference's fields in its order, its one choice too, and the same id, created and model.
    chunk_fields = ["id", "object", "created", "model", "system_fingerprint", "choices"]
    choice_fields = ["index", "delta", "logprobs", "finish_reason"]
    for chunk in [*ours, *reference]:
        assert list(chunk) == chunk_fields
        assert [list(choice) for choice in chunk["choices"]] == [choice_fields]
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in ours} == {
        ("chatcmpl-req-ref", "chat.completion.chunk", ours[0]["created"], "demo/demo-fast")
    }
    assert {c["system_fingerprint"] for c in ours} == {"fp_fake"}  # the upstream's, as OpenAI sends its own

    # An opening chunk (the role, empty content), content deltas, then one chunk with an empty delta and the
    # finish_reason: the opening chunk's bytes are the reference's but for the id, created and model.
    expected = upstream_answer(fake, "demo-fast", HELLO, 256)  # the gateway's default max_tokens
    assert ours[0]["choices"][0]["delta"] == reference[0]["choices"][0]["delta"]
    assert reference[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    opening = OPENAI_REFERENCE_CHAT_STREAM.split(b"\n\n")[0]
    for field in ("id", "created", "model", "system_fingerprint"):
        opening = opening.replace(json.dumps(reference[0][field]).encode(), json.dumps(ours[0][field]).encode())
    assert reply.text.encode().startswith(opening + b"\n\n")
    assert all("role" not in c["choices"][0]["delta"] for c in ours[1:])
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in ours) == expected.choices[0].message.content
    assert [c["choices"][0]["finish_reason"] for c in ours] == [None] * (len(ours) - 1) + ["stop"]
    assert [c["choices"][0]["finish_reason"] for c in reference] == [None] * (len(reference) - 1) + ["stop"]
    assert ours[-1]["choices"][0]["delta"] == reference[-1]["choices"][0]["delta"] == {}
    assert {c["choices"][0]["logprobs"] for c in [*ours, *reference]} == {None}

    # The usage chunk: the chunk's fields and usage last, no choice, the token counts in OpenAI's order.
    assert list(our_usage) == list(reference_usage) == [*chunk_fields, "usage"]
    assert our_usage["choices"] == reference_usage["choices"] == []
    assert list(reference_usage["usage"])[:3] == ["prompt_tokens", "completion_tokens", "total_tokens"]
    assert our_usage["usage"] == {
        "prompt_tokens": expected.usage.prompt_tokens,
        "completion_tokens": 3,
        "total_tokens": expected.usage.prompt_tokens + 3,
    }


def test_it_falls_back_before_the_first_token_of_a_stream(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"status": 503}})
    raw = sdk(gateway, new_key()).chat.completions.with_raw_response.create(
        model="router", messages=HELLO, max_tokens=4, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert raw.headers["X-Spignos-Route"] == "conversation/demo/demo-smart/2"
    assert {c.model for c in chunks} == {"demo/demo-smart"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == upstream_answer(fake, "demo-smart", HELLO, 4).choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert fake.stats()["requests"] == {"demo-fast": 1, "demo-smart": 2}  # 2: the stream, then upstream_answer


def test_it_ends_the_stream_with_an_error_the_sdk_raises_after_the_first_token(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"error_after": 2}})
    stream = sdk(gateway, new_key()).chat.completions.create(
        model="router",
        messages=HELLO,
        max_tokens=8,
        stream=True,
        extra_headers={"X-Request-ID": "req-oa-broken"},
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    error = caught.value
    assert not isinstance(error, openai.APIStatusError)  # in-stream: the HTTP status was already 200
    assert error.message.startswith("The upstream stream failed: ")
    assert (error.type, error.code) == ("upstream_error", "upstream_error")
    whole = upstream_answer(fake, "demo-fast", HELLO, 8).choices[0].message.content or ""
    assert "".join(received) == " ".join(whole.split()[:2])  # the two pieces sent before the upstream broke

    row = usage_row("req-oa-broken")
    assert (row.model, row.status, row.error_code, row.stream) == ("demo/demo-fast", "error", "upstream_error", True)
    assert row.completion_tokens == 2  # what was relayed before the break is booked
    assert fake.stats()["requests"] == {"demo-fast": 2}  # no fallback once a token was sent (+ upstream_answer)


def test_it_books_what_a_stream_produced_when_the_client_leaves(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"hang_after": 2}})  # two pieces of text, then the upstream goes quiet
    stream = sdk(gateway, new_key()).chat.completions.create(
        model="router", messages=HELLO, max_tokens=8, stream=True, extra_headers={"X-Request-ID": "req-oa-gone"}
    )
    opening = next(stream).choices[0].delta
    received = [next(stream).choices[0].delta.content, next(stream).choices[0].delta.content]
    stream.close()
    assert (opening.role, opening.content) == ("assistant", "")

    row = usage_row("req-oa-gone")
    assert (row.model, row.status, row.error_code, row.stream) == (
        "demo/demo-fast",
        "cancelled",
        "client_disconnected",
        True,
    )
    assert row.completion_tokens == 2
    assert len("".join(r or "" for r in received).split()) == 2


def test_it_relays_unicode_unchanged(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"echo": 1}})
    words = "héllo wörld 你好 😀 ümlaut"
    client = sdk(gateway, new_key())
    messages: Any = [{"role": "user", "content": words}]
    completion = client.chat.completions.create(model="demo/demo-fast", messages=messages)
    chunks = list(client.chat.completions.create(model="demo/demo-fast", messages=messages, stream=True))
    assert completion.choices[0].message.content == words
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == words


# --- tool calls ------------------------------------------------------------------------------------------


def test_it_routes_a_request_with_tools_and_returns_the_tool_call(gateway: Gateway, fake: Fake) -> None:
    raw = sdk(gateway, new_key()).chat.completions.with_raw_response.create(
        model="router",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    completion = raw.parse()
    assert raw.headers["X-Spignos-Route"] == "tools/demo/demo-smart/1"
    assert completion.model == "demo/demo-smart"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [tool_call] = choice.message.tool_calls or []
    assert tool_call.type == "function"
    assert tool_call.id.startswith("call_")
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "fake", "days": 1}
    assert fake.stats()["last"]["demo-smart"]["tools"] == [WEATHER_TOOL]  # type: ignore[index]


def test_it_streams_a_tool_call(gateway: Gateway, fake: Fake) -> None:
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    client = sdk(gateway, new_key())
    whole = client.chat.completions.create(model="router", messages=messages, tools=[WEATHER_TOOL])
    chunks = list(
        client.chat.completions.create(
            model="router",
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice="auto",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {c.model for c in chunks} == {"demo/demo-smart"}
    assert chunks[0].choices[0].delta.role == "assistant"
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            entry["name"] += (delta.function.name if delta.function else None) or ""
            entry["arguments"] += (delta.function.arguments if delta.function else None) or ""
    [expected] = whole.choices[0].message.tool_calls or []
    assert calls == {
        0: {"id": expected.id, "name": "get_weather", "arguments": expected.function.arguments}  # type: ignore[union-attr]
    }
    assert json.loads(calls[0]["arguments"]) == {"city": "fake", "days": 1}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_it_accepts_content_parts_and_a_tool_result_round_trip(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    question: Any = {"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]}
    first = client.chat.completions.create(model="router", messages=[question], tools=[WEATHER_TOOL])
    [tool_call] = first.choices[0].message.tool_calls or []
    follow_up: Any = [
        question,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": '{"temperature": 21}'},
    ]
    second = client.chat.completions.create(
        model="router", messages=follow_up, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert second.model == "demo/demo-smart"
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.tool_calls is None
    assert len((second.choices[0].message.content or "").split()) == 16
    assert fake.stats()["last"]["demo-smart"]["messages"] == follow_up  # type: ignore[index]
    assert fake.stats()["last"]["demo-smart"]["tool_choice"] == "none"  # type: ignore[index]


# --- typed errors ----------------------------------------------------------------------------------------


def test_it_raises_authentication_error_for_a_wrong_key(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(gateway, "sk-not-a-key").chat.completions.create(model="router", messages=HELLO)
    assert caught.value.status_code == 401
    assert (caught.value.type, caught.value.code) == ("authentication_error", "invalid_api_key")


def test_it_raises_rate_limit_error_with_retry_after_on_the_second_request(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key(rpm_limit=1))
    client.chat.completions.create(model="router", messages=HELLO, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="router", messages=HELLO, max_tokens=2)
    error = caught.value
    assert error.status_code == 429
    assert (error.type, error.code) == ("rate_limit_error", "rpm_limit_exceeded")
    assert 1 <= int(error.response.headers["Retry-After"]) <= 61
    assert fake.stats()["requests"] == {"demo-fast": 1}


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"n": 129}, "n"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"seed": "abc"}, "seed"),
        ({"logprobs": "maybe"}, "logprobs"),
        ({"messages": []}, "messages"),
        ({"top_p": 1.5}, "top_p"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages"),
    ],
)
def test_it_raises_bad_request_for_invalid_input(
    gateway: Gateway, fake: Fake, overrides: dict[str, Any], param: str
) -> None:
    arguments: dict[str, Any] = {"model": "router", "messages": HELLO, **overrides}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, new_key()).chat.completions.create(**arguments)
    assert caught.value.status_code == 400
    assert (caught.value.type, caught.value.param) == ("invalid_request_error", param)
    assert fake.stats()["requests"] == {}


def test_it_raises_a_502_status_error_when_every_model_fails(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"*": {"status": 500}})
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, new_key()).chat.completions.create(model="router", messages=HELLO)
    error = caught.value
    assert isinstance(error, openai.InternalServerError)
    assert error.status_code == 502
    assert (error.type, error.code) == ("upstream_error", "all_models_failed")
    assert [(a["model"], a["outcome"]) for a in error.body["attempts"]] == [  # type: ignore[index]
        ("demo/demo-fast", "error"),
        ("demo/demo-smart", "error"),
    ]


def test_it_raises_a_502_status_error_when_a_stream_cannot_start(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"*": {"status": 500}})
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway, new_key()).chat.completions.create(model="router", messages=HELLO, stream=True)
    assert caught.value.status_code == 502
    assert caught.value.code == "all_models_failed"


def test_it_raises_bad_request_when_the_upstream_refuses_the_request(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"status": 400}})
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, new_key()).chat.completions.create(model="router", messages=HELLO)
    error = caught.value
    assert error.status_code == 400
    assert (error.type, error.code) == ("invalid_request_error", "upstream_bad_request")
    assert fake.stats()["requests"] == {"demo-fast": 1}  # a 400 is not retried on the next model


# --- the async client ------------------------------------------------------------------------------------


def test_the_async_client_completes_and_streams(gateway: Gateway, fake: Fake) -> None:
    raw_key = new_key()

    async def run() -> tuple[Any, list[Any]]:
        async with AsyncOpenAI(base_url=gateway.url + "/v1", api_key=raw_key, max_retries=0, timeout=30) as client:
            completion = await client.chat.completions.create(model="router", messages=HELLO, max_tokens=5)
            stream = await client.chat.completions.create(
                model="router", messages=HELLO, max_tokens=5, stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in stream]
        return completion, chunks

    completion, chunks = asyncio.run(run())
    expected = upstream_answer(fake, "demo-fast", HELLO, 5)
    assert completion.model == "demo/demo-fast"
    assert completion.choices[0].message.content == expected.choices[0].message.content
    assert completion.usage.completion_tokens == 5
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.prompt_tokens == expected.usage.prompt_tokens
