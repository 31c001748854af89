"""The fake upstream's Anthropic side: tools with a tool_result round trip, thinking blocks, and the exact
stream event sequence, driven by the official ``anthropic`` SDK (and read byte by byte) over loopback.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema
import pytest
from anthropic import Anthropic
from anthropic.types import MessageParam, ToolParam

from llm.fake_upstream import VOCABULARY
from llm.tokens import count_message_tokens, count_tokens

MODEL = "claude-fake"
ASK: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                "required": ["lat", "lon"],
            },
            "hours": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        },
        "required": ["city", "unit", "days", "where", "hours"],
    },
}
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
def client(fake_reset: str) -> Iterator[Anthropic]:
    sdk = Anthropic(base_url=fake_reset, api_key="test-key", max_retries=0, timeout=10)
    yield sdk
    sdk.close()


def raw_events(url: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a streamed answer as sent, pings included (the SDK hides them)."""
    request = urllib.request.Request(
        url + "/v1/messages",
        data=json.dumps({"model": MODEL, "max_tokens": 2048, "stream": True, **body}).encode(),
        headers={"Content-Type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    pairs = []
    for block in text.split("\n\n"):
        if block:
            event, data = block.split("\n")
            pairs.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return pairs


# --- tools -------------------------------------------------------------------------------------------------


def test_a_tool_use_matches_its_input_schema_and_its_result_is_answered_in_words(client: Anthropic) -> None:
    first = client.messages.create(model=MODEL, max_tokens=256, messages=ASK, tools=[WEATHER])
    [tool_use] = first.content
    assert tool_use.type == "tool_use"
    follow_up: list[MessageParam] = [
        *ASK,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "21 C"}]},
    ]
    answer = client.messages.create(model=MODEL, max_tokens=256, messages=follow_up, tools=[WEATHER])
    forced = client.messages.create(
        model=MODEL, max_tokens=256, messages=follow_up, tools=[WEATHER], tool_choice={"type": "any"}
    )

    assert first.stop_reason == "tool_use"
    assert (tool_use.name, tool_use.id[:6]) == ("get_weather", "toolu_")
    jsonschema.validate(tool_use.input, WEATHER["input_schema"])
    assert tool_use.input == {"city": "fake", "unit": "celsius", "days": 1, "where": {"lat": 1, "lon": 1}, "hours": [1]}
    assert answer.stop_reason == "end_turn"
    assert [block.type for block in answer.content] == ["text"]
    assert answer.content[0].type == "text" and all(w in VOCABULARY for w in answer.content[0].text.split(" "))
    assert answer.usage.output_tokens == 16
    assert forced.stop_reason == "tool_use"


def test_tool_choice_picks_the_tool_or_none(client: Anthropic) -> None:
    other: ToolParam = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    named = client.messages.create(
        model=MODEL,
        max_tokens=256,
        messages=ASK,
        tools=[other, WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    auto = client.messages.create(model=MODEL, max_tokens=256, messages=ASK, tools=[other, WEATHER])
    none = client.messages.create(
        model=MODEL, max_tokens=256, messages=ASK, tools=[WEATHER], tool_choice={"type": "none"}
    )

    assert [(block.type, getattr(block, "name", None)) for block in named.content] == [("tool_use", "get_weather")]
    assert [(block.type, getattr(block, "name", None)) for block in auto.content] == [("tool_use", "get_time")]
    assert (none.stop_reason, [block.type for block in none.content]) == ("end_turn", ["text"])


def test_a_streamed_tool_use_is_anthropics_event_sequence(client: Anthropic, fake_reset: str) -> None:
    events = raw_events(fake_reset, {"messages": ASK, "tools": [WEATHER]})
    with client.messages.stream(model=MODEL, max_tokens=256, messages=ASK, tools=[WEATHER]) as stream:
        final = stream.get_final_message()

    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    partial = "".join(data["delta"]["partial_json"] for name, data in events if name == "content_block_delta")
    assert [block.type for block in final.content] == ["tool_use"]
    assert final.content[0].type == "tool_use" and final.content[0].input == json.loads(partial)
    assert final.stop_reason == "tool_use"


# --- thinking ----------------------------------------------------------------------------------------------


def test_thinking_comes_first_as_a_signed_block_and_counts_as_output(client: Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=2048, messages=ASK, thinking=THINKING)
    plain = client.messages.create(model=MODEL, max_tokens=2048, messages=ASK)

    thinking, text = message.content
    assert thinking.type == "thinking" and text.type == "text"
    assert len(thinking.thinking.split(" ")) == 16 and thinking.signature
    assert plain.content[0].type == "text" and text.text == plain.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 32 == count_tokens(thinking.thinking) + count_tokens(text.text)
    assert message.usage.input_tokens == count_message_tokens(ASK, MODEL)


def test_a_streamed_thinking_answer_is_anthropics_exact_event_sequence(client: Anthropic, fake_reset: str) -> None:
    events = raw_events(fake_reset, {"model": MODEL + "@tokens=2", "messages": ASK, "thinking": THINKING})
    with client.messages.stream(model=MODEL + "@tokens=2", max_tokens=2048, messages=ASK, thinking=THINKING) as stream:
        helper_events = [event.type for event in stream]
        final = stream.get_final_message()

    assert [(name, data.get("index"), data.get("delta", {}).get("type")) for name, data in events] == [
        ("message_start", None, None),
        ("content_block_start", 0, None),
        ("ping", None, None),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, None),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert events[7][1]["content_block"] == {"type": "text", "text": ""}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 4},
    }
    assert helper_events.count("thinking") == 2 and helper_events.count("signature") == 1
    thinking = "".join(d["delta"]["thinking"] for _, d in events if d.get("delta", {}).get("type") == "thinking_delta")
    assert final.content[0].type == "thinking"
    assert (final.content[0].thinking, final.content[0].signature) == (thinking, events[5][1]["delta"]["signature"])
    assert [block.type for block in final.content] == ["thinking", "text"]


def test_thinking_with_tools_then_the_block_sent_back_unchanged(client: Anthropic) -> None:
    first = client.messages.create(model=MODEL, max_tokens=2048, messages=ASK, tools=[WEATHER], thinking=THINKING)
    thinking, tool_use = first.content
    assert (thinking.type, tool_use.type, first.stop_reason) == ("thinking", "tool_use", "tool_use")
    result: MessageParam = {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": tool_use.id if tool_use.type == "tool_use" else "",
                "content": "21 C",
            }
        ],
    }
    answer = client.messages.create(
        model=MODEL,
        max_tokens=2048,
        messages=[*ASK, {"role": "assistant", "content": first.content}, result],
        tools=[WEATHER],
        thinking=THINKING,
    )
    tampered = first.to_param()
    tampered_content: Any = [{**thinking.model_dump(), "thinking": "something else"}, tool_use.model_dump()]
    tampered["content"] = tampered_content
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL, max_tokens=2048, messages=[*ASK, tampered, result], tools=[WEATHER], thinking=THINKING
        )

    assert [block.type for block in answer.content] == ["thinking", "text"]
    assert answer.stop_reason == "end_turn"
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages.1.content.0: Invalid `signature` in `thinking` block",
        },
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1023}},
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
            "`max_tokens` must be greater than `thinking.budget_tokens`.",
        ),
        (
            {"thinking": {"type": "sometimes"}},
            "thinking.type: Input should be 'enabled', 'disabled', 'adaptive' or 'between_tools'",
        ),
        (
            {"thinking": THINKING, "tools": [WEATHER], "tool_choice": {"type": "any"}},
            "Thinking may not be enabled when tool_choice forces tool use.",
        ),
    ],
)
def test_bad_thinking_requests_are_anthropic_400s(client: Anthropic, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=2048, messages=ASK, extra_body=extra)
    assert caught.value.body == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}


def test_thinking_disabled_is_a_plain_answer(client: Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=256, messages=ASK, thinking={"type": "disabled"})
    assert [block.type for block in message.content] == ["text"]


def test_adaptive_thinking_thinks_within_max_tokens_and_omitted_thinking_shows_no_text(client: Anthropic) -> None:
    adaptive = client.messages.create(model=MODEL, max_tokens=20, messages=ASK, thinking={"type": "adaptive"})
    omitted = client.messages.create(
        model=MODEL,
        max_tokens=2048,
        messages=ASK,
        thinking={"type": "enabled", "budget_tokens": 1024, "display": "omitted"},
    )

    thinking, text = adaptive.content
    assert thinking.type == "thinking" and text.type == "text"
    assert (len(thinking.thinking.split(" ")), len(text.text.split(" "))) == (16, 4)
    assert (adaptive.stop_reason, adaptive.usage.output_tokens) == ("max_tokens", 20)
    hidden = omitted.content[0]
    assert hidden.type == "thinking" and hidden.thinking == "" and hidden.signature
    assert omitted.usage.output_tokens == 32  # thought all the same
