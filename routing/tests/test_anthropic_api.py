"""The Anthropic-compatible front door, driven by the official ``anthropic`` SDK over real HTTP.

The demo provider (OpenAI-kind) points at the fake upstream, which is deterministic: asking it directly for
the same messages gives the exact text and usage the gateway must relay, translated. An Anthropic-kind
provider on the same fake (its ``/v1/messages`` side) covers the other direction of translation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic import Anthropic
from django.conf import settings
from openai import OpenAI

from accounts.services import apikey_create
from ledger.models import UsageRecord
from llm import count_message_tokens, count_tokens
from routing.models import LLMModel, Provider
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)

HELLO: Any = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
OPENAI_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_TOOL["input_schema"],
    },
}
# Anthropic's published example of a streamed text answer, byte for byte: "Streaming Messages", "Basic
# streaming request" (docs.anthropic.com/en/docs/build-with-claude/streaming, 2024-2025).
REFERENCE_STREAM = Path(__file__).parent / "fixtures" / "anthropic_messages_stream.sse"


def sdk(gateway: Gateway, raw_key: str, **options: Any) -> Anthropic:
    return Anthropic(base_url=gateway.url, api_key=raw_key, max_retries=0, timeout=30, **options)


def new_key(**limits: Any) -> str:
    return apikey_create(name="sdk", **limits)[1]


def upstream_answer(fake: Fake, model: str, messages: Any, max_tokens: int, **extra: Any) -> Any:
    """What the fake upstream itself answers to the translated chat request."""
    direct = OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    return direct.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, **extra)


def usage_row(request_id: str) -> UsageRecord:
    wait_until(lambda: UsageRecord.objects.filter(request_id=request_id).exists(), timeout=10)
    return UsageRecord.objects.get(request_id=request_id)


@pytest.fixture
def claude(gateway: Gateway, fake: Fake) -> str:
    """An Anthropic-kind provider on the fake upstream's Messages API; its model's id."""
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=fake.url)
    LLMModel.objects.create(provider=provider, name="claude-fake")
    routing_changed()
    return "claude/claude-fake"


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every event of an SSE body, checking each is `event:` then `data:` lines."""
    events = []
    for chunk in raw.split("\n\n"):
        if not chunk.strip():
            continue
        lines = chunk.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), chunk
        events.append((lines[0].removeprefix("event: "), json.loads(lines[1].removeprefix("data: "))))
    return events


# --- messages.create -------------------------------------------------------------------------------------


def test_it_answers_a_message_with_the_routed_models_text_and_exact_usage(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    raw = client.messages.with_raw_response.create(
        model="router",
        max_tokens=5,
        system="Be brief.",
        messages=HELLO,
        metadata={"user_id": "u-9"},
        extra_headers={"X-Request-ID": "req-an-1"},
    )
    message = raw.parse()
    translated = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    sent_upstream = fake.stats()["last"]["demo-fast"]  # type: ignore[index]
    expected = upstream_answer(fake, "demo-fast", translated, 5)

    assert (sent_upstream["messages"], sent_upstream["max_tokens"], sent_upstream["user"]) == (translated, 5, "u-9")
    assert raw.status_code == 200
    assert raw.headers["X-Spignos-Route"] == "conversation/demo/demo-fast/1"
    assert raw.headers["X-Request-ID"] == "req-an-1"
    assert message.id == "msg_req-an-1"
    assert (message.type, message.role, message.model) == ("message", "assistant", "demo/demo-fast")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == expected.choices[0].message.content  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("max_tokens", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (expected.usage.prompt_tokens, 5)
    assert (message.usage.cache_creation_input_tokens, message.usage.cache_read_input_tokens) == (0, 0)

    row = usage_row("req-an-1")
    assert (row.endpoint, row.category, row.model, row.status, row.stream, row.user_id) == (
        "messages",
        "conversation",
        "demo/demo-fast",
        "ok",
        False,
        "u-9",
    )
    assert (row.prompt_tokens, row.completion_tokens) == (expected.usage.prompt_tokens, 5)


def test_it_ends_the_turn_when_the_answer_fits_and_accepts_the_bearer_header(gateway: Gateway, fake: Fake) -> None:
    client = Anthropic(base_url=gateway.url, auth_token=new_key(), max_retries=0, timeout=30)
    message = client.messages.create(model="demo/demo-smart", max_tokens=50, messages=HELLO)
    assert message.model == "demo/demo-smart"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 16
    assert len(message.content[0].text.split()) == 16  # type: ignore[union-attr]


def test_it_translates_the_sampling_fields_and_text_blocks(gateway: Gateway, fake: Fake) -> None:
    sdk(gateway, new_key()).messages.create(
        model="demo/demo-fast",
        max_tokens=7,
        system=[
            {"type": "text", "text": "One."},
            {"type": "text", "text": "Two.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ],
        stop_sequences=["END", "STOP"],
        extra_body={"temperature": 0.25, "top_p": 0.5},  # (this SDK no longer names them; older ones do)
    )
    sent = fake.stats()["last"]["demo-fast"]  # type: ignore[index]
    assert sent["messages"] == [
        {"role": "system", "content": "One.\nTwo."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["max_tokens"]) == (0.25, 0.5, ["END", "STOP"], 7)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_top_k_to_an_openai_kind_model_is_an_unsupported_parameter(gateway: Gateway, fake: Fake, stream: bool) -> None:
    # top_k is no chat-completions field (OpenAI answers 400 to it): the demo provider cannot honour it.
    request_id = f"req-an-top-k-{stream}"
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway, new_key()).messages.create(
            model="demo/demo-fast",
            max_tokens=5,
            messages=HELLO,
            stream=stream,
            extra_body={"top_k": 5},  # (this SDK no longer names it)
            extra_headers={"X-Request-ID": request_id},
        )
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Unsupported parameter: 'top_k' is not supported by openai_compatible provider 'demo' "
            "(model 'demo-fast'). Remove it, or set drop_params on the provider to have it dropped.",
        },
        "request_id": request_id,
    }
    assert fake.stats()["requests"] == {}
    row = usage_row(request_id)
    assert (row.status, row.error_code, row.prompt_tokens, row.completion_tokens) == (
        "error",
        "unsupported_parameter",
        count_message_tokens(HELLO),
        0,
    )


def test_top_k_to_an_openai_kind_model_with_drop_params_is_served_without_it(gateway: Gateway, fake: Fake) -> None:
    Provider.objects.filter(name="demo").update(drop_params=True)
    routing_changed()
    message = sdk(gateway, new_key()).messages.create(
        model="demo/demo-fast", max_tokens=5, messages=HELLO, extra_body={"top_k": 5}
    )
    sent = fake.stats()["last"]["demo-fast"]  # type: ignore[index]
    assert set(sent) == {"model", "messages", "max_tokens", "temperature", "top_p"}
    expected = upstream_answer(fake, "demo-fast", HELLO, 5)
    assert message.content[0].text == expected.choices[0].message.content  # type: ignore[union-attr]
    assert message.usage.output_tokens == 5


def test_it_translates_images_to_data_urls(gateway: Gateway, fake: Fake) -> None:
    sdk(gateway, new_key()).messages.create(
        model="demo/demo-fast",
        max_tokens=3,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert fake.stats()["last"]["demo-fast"]["messages"] == [  # type: ignore[index]
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": "What is this?"},
            ],
        }
    ]


# --- tools -----------------------------------------------------------------------------------------------


def test_it_returns_a_tool_use_block_and_takes_the_tool_result_back(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    question: Any = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.messages.create(model="router", max_tokens=100, messages=[question], tools=[WEATHER_TOOL])
    assert first.model == "demo/demo-smart"  # a request with tools is routed to the tools category
    assert first.stop_reason == "tool_use"
    [tool_use] = first.content
    assert tool_use.type == "tool_use"
    assert tool_use.id.startswith("call_")
    assert (tool_use.name, tool_use.input) == ("get_weather", {"city": "fake", "days": 1})
    assert fake.stats()["last"]["demo-smart"]["tools"] == [OPENAI_WEATHER_TOOL]  # type: ignore[index]

    second = client.messages.create(
        model="router",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"},
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": '{"temperature": 21}'}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert [block.type for block in second.content] == ["text"]
    assert len(second.content[0].text.split()) == 16  # type: ignore[union-attr]
    sent = fake.stats()["last"]["demo-smart"]  # type: ignore[index]
    assert sent["messages"] == [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": tool_use.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"fake","days":1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": tool_use.id, "content": '{"temperature": 21}'},
    ]
    assert sent["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("choice", "translated"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_it_translates_tool_choice(gateway: Gateway, fake: Fake, choice: Any, translated: Any) -> None:
    sdk(gateway, new_key()).messages.create(
        model="demo/demo-smart", max_tokens=50, messages=HELLO, tools=[WEATHER_TOOL], tool_choice=choice
    )
    assert fake.stats()["last"]["demo-smart"]["tool_choice"] == translated  # type: ignore[index]


# --- streaming -------------------------------------------------------------------------------------------


def test_it_streams_anthropics_exact_event_sequence(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    with client.messages.stream(
        model="router", max_tokens=6, messages=HELLO, extra_headers={"X-Request-ID": "req-an-stream"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    expected = upstream_answer(fake, "demo-fast", HELLO, 6)
    text = expected.choices[0].message.content

    # The SDK adds its own "text" events (one per delta) to the raw ones, and reads past the ping (which the
    # next test sees on the wire).
    raw = [e.type for e in events if e.type != "text"]
    deltas = len([e for e in events if e.type == "content_block_delta"])
    assert raw == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert deltas == 6
    start = events[0]
    assert start.type == "message_start"
    assert (start.message.id, start.message.model, start.message.content) == ("msg_req-an-stream", "demo/demo-fast", [])
    assert start.message.usage.input_tokens == expected.usage.prompt_tokens
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert (final.stop_reason, final.stop_sequence) == ("max_tokens", None)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (expected.usage.prompt_tokens, 6)

    row = usage_row("req-an-stream")
    assert (row.endpoint, row.model, row.status, row.stream, row.completion_tokens) == (
        "messages",
        "demo/demo-fast",
        "ok",
        True,
        6,
    )


def test_its_stream_has_the_fields_of_anthropics_published_reference(gateway: Gateway, fake: Fake) -> None:
    reference = sse_events(REFERENCE_STREAM.read_text())
    reply = call(
        "POST",
        gateway.url + "/v1/messages",
        {"model": "router", "max_tokens": 2, "messages": HELLO, "stream": True},
        key=new_key(),
    )
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    ours = sse_events(reply.text)

    def shape(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any]]:
        """Event names and the keys of each event's data, nested objects' keys included (not the values)."""

        def keys(value: Any) -> Any:
            return {k: keys(v) for k, v in value.items()} if isinstance(value, dict) else type(value).__name__

        return [(name, keys(data)) for name, data in events]

    assert [name for name, _ in ours] == [name for name, _ in reference]  # two text deltas in both
    for (name, data), (_, reference_data) in zip(ours, reference, strict=True):
        assert data["type"] == name
        reference_shape, our_shape = shape([(name, reference_data)])[0][1], shape([(name, data)])[0][1]
        # Every field the reference has, with its type (ours adds the cache counters and the message_delta's
        # input_tokens, as Anthropic's current API does).
        assert _contains(our_shape, reference_shape), (name, our_shape, reference_shape)


def _contains(ours: Any, reference: Any) -> bool:
    if isinstance(reference, dict):
        return isinstance(ours, dict) and all(k in ours and _contains(ours[k], v) for k, v in reference.items())
    return bool(ours == reference or reference == "NoneType")


def test_it_streams_a_tool_use_block_with_input_json_deltas(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.messages.stream(model="router", max_tokens=100, messages=messages, tools=[WEATHER_TOOL]) as stream:
        events = [e for e in stream if e.type not in ("text", "input_json")]
        final = stream.get_final_message()
    names = [e.type for e in events]
    assert names[:2] == ["message_start", "content_block_start"]  # (the SDK reads past the ping)
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    block_start = events[1]
    assert block_start.type == "content_block_start"
    assert block_start.content_block.type == "tool_use"
    assert block_start.content_block.input == {}
    assert {e.delta.type for e in events if e.type == "content_block_delta"} == {"input_json_delta"}
    [tool_use] = final.content
    assert tool_use.type == "tool_use"
    assert (tool_use.name, tool_use.input) == ("get_weather", {"city": "fake", "days": 1})
    assert final.stop_reason == "tool_use"


def test_it_ends_a_broken_stream_with_an_error_event(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"error_after": 2}})
    reply = call(
        "POST",
        gateway.url + "/v1/messages",
        {"model": "router", "max_tokens": 8, "messages": HELLO, "stream": True},
        key=new_key(),
        headers={"X-Request-ID": "req-an-broken"},
    )
    events = sse_events(reply.text)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "error",
    ]
    _, error = events[-1]
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    assert error["error"]["message"].startswith("The upstream stream failed: ")
    assert error["request_id"] == "req-an-broken"

    client = sdk(gateway, new_key())
    with (  # the SDK raises it
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="router", max_tokens=8, messages=HELLO) as stream,
    ):
        list(stream)
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]

    row = usage_row("req-an-broken")
    assert (row.status, row.error_code, row.completion_tokens) == ("error", "upstream_error", 2)


# --- an Anthropic-kind provider: translated both ways --------------------------------------------------


def direct(fake: Fake) -> Anthropic:
    """The fake upstream's Anthropic side, asked directly: what the gateway must relay as it came."""
    return Anthropic(base_url=fake.url, api_key="unused", max_retries=0, timeout=30)


THINKING_BODY: Any = {
    "max_tokens": 2000,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]}],
    "tools": [{**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "u-claude"},
}


def test_an_anthropic_model_is_sent_the_body_as_it_came_and_answers_in_kind(
    gateway: Gateway, fake: Fake, claude: str
) -> None:
    client = sdk(gateway, new_key())
    raw = client.messages.with_raw_response.create(
        model=claude, **THINKING_BODY, extra_body={"top_k": 5}, extra_headers={"X-Request-ID": "req-an-native"}
    )
    message = raw.parse()
    sent = fake.stats()["last"]["claude-fake"]  # type: ignore[index]
    # Thinking, cache_control, top_k and metadata as the client sent them: nothing translated away.
    assert sent == {**THINKING_BODY, "model": "claude-fake", "top_k": 5}
    expected = direct(fake).messages.create(model="claude-fake", **THINKING_BODY, extra_body={"top_k": 5})

    assert raw.headers["X-Spignos-Route"] == "-/claude/claude-fake/1"
    assert (message.id, message.model) == ("msg_req-an-native", claude)
    assert [block.type for block in message.content] == ["thinking", "tool_use"]
    assert message.to_dict()["content"] == expected.to_dict()["content"]  # the signature included
    assert (message.stop_reason, message.usage) == (expected.stop_reason, expected.usage)

    # The thinking block goes back with the tool result: the upstream checks its signature.
    [thinking, tool_use] = message.content
    assert tool_use.type == "tool_use"
    follow_up = [
        *THINKING_BODY["messages"],
        {"role": "assistant", "content": [thinking.to_dict(), tool_use.to_dict()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "21 C"}]},
    ]
    answer = client.messages.create(model=claude, **{**THINKING_BODY, "messages": follow_up})
    assert [block.type for block in answer.content] == ["thinking", "text"]
    assert answer.stop_reason == "end_turn"
    assert fake.stats()["last"]["claude-fake"]["messages"] == follow_up  # type: ignore[index]

    row = usage_row("req-an-native")
    assert (row.model, row.status, row.prompt_tokens, row.completion_tokens) == (
        claude,
        "ok",
        expected.usage.input_tokens,
        expected.usage.output_tokens,
    )


def test_an_anthropic_models_stream_is_relayed_as_it_came(gateway: Gateway, fake: Fake, claude: str) -> None:
    body = {**THINKING_BODY, "stream": True}
    reply = call(
        "POST",
        gateway.url + "/v1/messages",
        {**body, "model": claude},
        key=new_key(),
        headers={"X-Request-ID": "req-an-native-stream"},
    )
    theirs = call("POST", fake.url + "/v1/messages", {**body, "model": "claude-fake"})
    ours, expected = sse_events(reply.text), sse_events(theirs.text)

    assert [name for name, _ in ours] == [name for name, _ in expected]
    assert {data["delta"]["type"] for name, data in ours if name == "content_block_delta"} == {
        "thinking_delta",
        "signature_delta",
        "input_json_delta",
    }
    (_, start), (_, expected_start) = ours[0], expected[0]
    assert (start["message"]["id"], start["message"]["model"]) == ("msg_req-an-native-stream", claude)
    same_start = {**expected_start, "message": {**expected_start["message"], "id": "msg_req-an-native-stream"}}
    same_start["message"]["model"] = claude
    assert start == same_start
    assert ours[1:] == expected[1:]  # every other event byte for byte the same data

    with sdk(gateway, new_key()).messages.stream(model=claude, **THINKING_BODY) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "tool_use"]
    assert final.stop_reason == "tool_use"
    row = usage_row("req-an-native-stream")
    assert (row.model, row.status, row.stream) == (claude, "ok", True)


def test_an_anthropic_model_answers_a_plain_message_in_kind(gateway: Gateway, fake: Fake, claude: str) -> None:
    client = sdk(gateway, new_key())
    message = client.messages.create(model=claude, max_tokens=100, messages=HELLO, system="Be brief.")
    expected = direct(fake).messages.create(model="claude-fake", max_tokens=100, messages=HELLO, system="Be brief.")
    assert message.model == claude
    assert (message.content, message.stop_reason, message.usage) == (
        expected.content,
        "end_turn",
        expected.usage,
    )
    with client.messages.stream(model=claude, max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_message()
    [tool_use] = final.content
    assert tool_use.type == "tool_use"
    assert tool_use.id.startswith("toolu_")
    assert (tool_use.name, tool_use.input, final.stop_reason) == (
        "get_weather",
        {"city": "fake", "days": 1},
        "tool_use",
    )


# --- count_tokens ----------------------------------------------------------------------------------------


def test_it_counts_the_prompts_tokens_as_the_gateway_does(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    counted = client.messages.count_tokens(model="router", system="Be brief.", messages=HELLO)
    assert counted.input_tokens == count_message_tokens(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    )
    with_tools = client.messages.count_tokens(model="demo/demo-fast", messages=HELLO, tools=[WEATHER_TOOL])
    tools_json = json.dumps([OPENAI_WEATHER_TOOL], separators=(",", ":"))
    assert with_tools.input_tokens == count_message_tokens(HELLO) + count_tokens(tools_json)
    # The same count the gateway books as the prompt of a message (the fake counts alike for an OpenAI model).
    message = client.messages.create(model="router", max_tokens=2, system="Be brief.", messages=HELLO)
    assert message.usage.input_tokens == counted.input_tokens
    assert fake.stats()["requests"] == {"demo-fast": 1}  # counting calls no model


def test_counting_an_unknown_model_is_a_not_found_error(gateway: Gateway, fake: Fake) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(gateway, new_key()).messages.count_tokens(model="nope/nothing", messages=HELLO)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The model 'nope/nothing' does not exist."},
        "request_id": caught.value.response.headers["X-Request-ID"],
    }


# --- errors, in Anthropic's envelope ---------------------------------------------------------------------


def test_a_wrong_key_raises_authentication_error(gateway: Gateway, fake: Fake) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk(gateway, "sk-not-a-key").messages.create(model="router", max_tokens=5, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"] == {"type": "authentication_error", "message": "Invalid API key."}  # type: ignore[index]
    assert fake.stats()["requests"] == {}


def test_no_key_is_an_authentication_error(gateway: Gateway, fake: Fake) -> None:
    reply = call("POST", gateway.url + "/v1/messages", {"model": "router", "max_tokens": 5, "messages": HELLO})
    assert reply.status == 401
    body = reply.json()
    assert (body["type"], body["error"]["type"]) == ("error", "authentication_error")


def test_missing_max_tokens_raises_bad_request(gateway: Gateway, fake: Fake) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway, new_key()).messages.create(
            model="router",
            messages=HELLO,
            max_tokens=anthropic.omit,  # type: ignore[call-overload]  # sent without it, as a raw client may
        )
    assert caught.value.status_code == 400
    assert caught.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error",
        "message": "max_tokens: Field required.",
    }
    assert fake.stats()["requests"] == {}


def test_an_unknown_model_raises_not_found(gateway: Gateway, fake: Fake) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(gateway, new_key()).messages.create(model="nope/nothing", max_tokens=5, messages=HELLO)
    assert caught.value.body["error"] == {  # type: ignore[index]
        "type": "not_found_error",
        "message": "The model 'nope/nothing' does not exist.",
    }


def test_the_rate_limit_raises_rate_limit_error_with_retry_after(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key(rpm_limit=1))
    client.messages.create(model="router", max_tokens=2, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="router", max_tokens=2, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 61


def test_every_model_failing_is_an_api_error_with_status_502(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"*": {"status": 500}})
    with pytest.raises(anthropic.InternalServerError) as caught:
        sdk(gateway, new_key()).messages.create(model="router", max_tokens=5, messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.body["error"] == {  # type: ignore[index]
        "type": "api_error",
        "message": "Every model of the chain failed (2 attempts).",
    }
    client = sdk(gateway, new_key())
    with (
        pytest.raises(anthropic.InternalServerError) as streamed,
        client.messages.stream(model="router", max_tokens=5, messages=HELLO) as stream,
    ):
        list(stream)
    assert streamed.value.status_code == 502


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "router", "max_tokens": "5", "messages": HELLO}, "max_tokens: Input should be a valid integer."),
        ({"model": "router", "max_tokens": 0, "messages": HELLO}, "max_tokens: Input should be between 1 and 1000000."),
        ({"model": 7, "max_tokens": 5, "messages": HELLO}, "model: Input should be a string."),
        ({"max_tokens": 5, "messages": HELLO}, "model: Field required (a non-empty string)."),
        ({"model": "router", "max_tokens": 5}, "messages: Field required."),
        (
            {"model": "router", "max_tokens": 5, "messages": []},
            "messages: Input should be a non-empty list of messages.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": [{"role": "system", "content": "hi"}]},
            "messages.0.role: Input should be 'user' or 'assistant'.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]},
            "messages.0.content: Input should be a string or a list of content blocks.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages.0.content.0.type: Unsupported content block type 'video' in a user message.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content.0.text: Input should be a string.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": HELLO, "temperature": 1.5},
            "temperature: Input should be between 0 and 1.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": HELLO, "stop_sequences": "END"},
            "stop_sequences: Input should be a list of non-empty strings.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": HELLO, "tools": [{"name": "f"}]},
            "tools.0.input_schema: Field required (a JSON schema object).",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": HELLO, "tool_choice": {"type": "any"}},
            "tool_choice: tool_choice may only be specified while providing tools.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": HELLO, "metadata": {"user_id": 5}},
            "metadata.user_id: Input should be a string of at most 256 characters.",
        ),
        (
            {"model": "router", "max_tokens": 5, "messages": HELLO, "stream": "yes"},
            "stream: Input should be a valid boolean.",
        ),
    ],
)
def test_bad_input_is_an_invalid_request_error_and_nothing_is_booked(
    gateway: Gateway, fake: Fake, body: dict[str, Any], message: str
) -> None:
    reply = call("POST", gateway.url + "/v1/messages", body, key=new_key(), headers={"X-Request-ID": "req-an-bad"})
    assert reply.status == 400, reply.text
    assert reply.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
        "request_id": "req-an-bad",
    }
    assert fake.stats()["requests"] == {}
    assert not UsageRecord.objects.filter(request_id="req-an-bad").exists()


def test_a_body_that_is_not_json_is_an_invalid_request_error(gateway: Gateway, fake: Fake) -> None:
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        reply = call("POST", gateway.url + path, raw=b"{", key=new_key())
        assert reply.status == 400
        body = reply.json()
        assert (body["type"], body["error"]["type"]) == ("error", "invalid_request_error")
        assert body["error"]["message"].startswith("JSON parse error")
    wrong_method = call("GET", gateway.url + "/v1/messages", key=new_key())
    assert wrong_method.status == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"


# --- hostile bodies: Anthropic's envelope, nothing logged as an error, nothing sent or booked ---------------

ANTHROPIC_DOORS = ["/v1/messages", "/v1/messages/count_tokens"]


@pytest.mark.parametrize(
    ("raw", "headers", "status", "error_type", "message_start"),
    [
        (b"[1, 2]", {}, 400, "invalid_request_error", "The request body must be a JSON object."),
        (b'{"model": "router", "max_tokens": NaN, "messages": []}', {}, 400, "invalid_request_error", "JSON parse"),
        (b'{"model": "router", "max_tokens": 1e999}', {}, 400, "invalid_request_error", "JSON parse"),
        (b'{"model": "a\xed\xa0\x80b", "max_tokens": 2}', {}, 400, "invalid_request_error", "JSON parse"),
        (b'{"model": "router"}', {"Content-Type": "text/plain"}, 415, "invalid_request_error", "Unsupported media"),
        (
            b'{"model": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}',
            {},
            413,
            "request_too_large",
            "Request body too large.",
        ),
    ],
    ids=["not-an-object", "nan", "1e999", "not-utf8", "text-plain", "too-large"],
)
def test_a_hostile_body_is_answered_in_anthropics_envelope(
    logged_gateway: Gateway,
    fake: Fake,
    raw: bytes,
    headers: dict[str, str],
    status: int,
    error_type: str,
    message_start: str,
) -> None:
    for path in ANTHROPIC_DOORS:
        reply = call("POST", logged_gateway.url + path, raw=raw, key=new_key(), headers=headers)
        assert reply.status == status, (path, reply.text)
        assert reply.headers["content-type"].startswith("application/json")
        body = reply.json()
        assert (body["type"], body["error"]["type"]) == ("error", error_type), (path, body)
        assert body["error"]["message"].startswith(message_start), (path, body)
        assert set(body) == {"type", "error", "request_id"}
    assert fake.stats()["requests"] == {}
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_a_chain_falls_back_between_an_anthropic_model_and_a_translated_one(
    gateway: Gateway, fake: Fake, claude: str, streamed: bool
) -> None:
    staff = apikey_create(name="staff", is_staff=True)[1]
    mapping = {"category": "conversation", "models": [claude, "demo/demo-fast"]}
    assert call("POST", gateway.url + "/api/v1/routing/model-mapping", mapping, key=staff).status == 200
    client = sdk(gateway, new_key())

    def ask() -> Any:
        if not streamed:
            return client.messages.create(model="router", max_tokens=100, messages=HELLO)
        with client.messages.stream(model="router", max_tokens=100, messages=HELLO) as stream:
            return stream.get_final_message()

    answered = ask()  # the Anthropic model first: its own message
    expected = direct(fake).messages.create(model="claude-fake", max_tokens=100, messages=HELLO)
    assert answered.model == claude
    assert ([b.to_dict() for b in answered.content], answered.usage) == (expected.to_dict()["content"], expected.usage)

    fake.configure(**{"claude-fake": {"status": 529}})  # overloaded: the next model of the chain, translated
    answered = ask()
    translated = upstream_answer(fake, "demo-fast", HELLO, 100)
    assert answered.model == "demo/demo-fast"
    assert answered.content[0].text == translated.choices[0].message.content
    assert answered.usage.output_tokens == translated.usage.completion_tokens
