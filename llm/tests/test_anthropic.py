"""AnthropicProvider against the fake's /v1/messages: text, streams, tools both ways, request translation."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest

from llm import BadRequestError, ChatRequest, LLMHandler, ProviderConfig, RetryPolicy, StreamEvent, ToolCall
from llm.providers.anthropic import to_anthropic_body
from llm.tokens import count_tokens

NO_RETRY = RetryPolicy(max_attempts=1)
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


T = TypeVar("T")


def run(handler: LLMHandler, awaitable: Awaitable[T]) -> T:
    """Run `awaitable` in a fresh event loop, then close the handler's pools of that loop."""

    async def main() -> T:
        try:
            return await awaitable
        finally:
            await handler.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def handler(fake_upstream_url: str) -> Iterator[LLMHandler]:
    configs = [
        ProviderConfig(name="an", kind="anthropic", base_url=fake_upstream_url, api_key="sk-ant-test"),
        ProviderConfig(name="an1", kind="anthropic", base_url=f"{fake_upstream_url}/v1/"),
    ]
    with LLMHandler(configs, retry=NO_RETRY) as llm:
        yield llm


def last_body(url: str, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_fake/stats", timeout=5) as response:
        stats: dict[str, Any] = json.loads(response.read())
    body: dict[str, Any] = stats["last"][model]
    return body


def test_it_generates_text(handler: LLMHandler) -> None:
    result = handler.generate("an/claude-test@tokens=5", prompt="Hello")

    assert result.finish_reason == "stop"
    assert result.tool_calls == ()
    assert (result.model, result.provider) == ("claude-test@tokens=5", "an")
    assert result.usage.completion_tokens == 5 == count_tokens(result.text)
    assert result.usage.total_tokens == result.usage.prompt_tokens + 5
    assert result.usage.estimated is False
    assert result.timings.ttft_ms is None
    assert result.timings.total_ms > 0


def test_a_base_url_ending_in_v1_posts_to_messages(handler: LLMHandler) -> None:
    assert handler.generate("an1/claude-v1@tokens=2", prompt="Hello").usage.completion_tokens == 2


def test_max_tokens_maps_to_length(handler: LLMHandler) -> None:
    result = handler.generate("an/claude-long@tokens=10", prompt="Hello", max_tokens=3)
    assert (result.finish_reason, result.usage.completion_tokens) == ("length", 3)


def test_it_streams_text(handler: LLMHandler) -> None:
    events = list(handler.stream("an/claude-stream@tokens=6", prompt="Hello"))

    deltas, done = events[:-1], events[-1]
    assert [event.type for event in deltas] == ["delta"] * 6
    assert done.type == "done" and done.result is not None
    assert "".join(event.content for event in deltas) == done.result.text
    assert done.result.finish_reason == done.finish_reason == "stop"
    assert (done.result.usage.completion_tokens, done.result.usage.estimated) == (6, False)
    assert done.result.timings.ttft_ms is not None
    assert 0 <= done.result.timings.ttft_ms <= done.result.timings.total_ms


def test_it_streams_asynchronously(handler: LLMHandler) -> None:
    async def collect() -> list[StreamEvent]:
        return [event async for event in handler.astream("an/claude-async@tokens=4", prompt="Hello")]

    events = run(handler, collect())
    assert events[-1].result is not None
    assert events[-1].result.text == "".join(event.content for event in events[:-1])
    assert events[-1].result.usage.completion_tokens == 4


def test_a_stream_without_usage_is_counted_locally(handler: LLMHandler) -> None:
    done = list(handler.stream("an/claude-nousage@tokens=4,usage=0", prompt="Hello"))[-1]
    assert done.result is not None
    assert done.result.usage.completion_tokens == 4
    assert done.result.usage.estimated is True  # no exact tokenizer for Claude models


def test_it_returns_a_tool_call(handler: LLMHandler) -> None:
    result = handler.generate("an/claude-tools", prompt="Weather in Paris?", tools=[WEATHER_TOOL])

    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert json.loads(call.arguments) == {"city": "fake", "days": 1}


def test_it_streams_a_tool_call_as_deltas(handler: LLMHandler) -> None:
    events = list(handler.stream("an/claude-stream-tools", prompt="Weather?", tools=[WEATHER_TOOL]))

    deltas = [delta for event in events[:-1] for delta in event.tool_calls]
    assert deltas[0].index == 0 and deltas[0].name == "get_weather" and deltas[0].id
    assert all(delta.id is None and delta.index == 0 for delta in deltas[1:])
    arguments = "".join(delta.arguments for delta in deltas)
    done = events[-1].result
    assert done is not None and done.finish_reason == "tool_calls"
    assert done.tool_calls == (ToolCall(id=deltas[0].id, name="get_weather", arguments=arguments),)
    assert json.loads(arguments) == {"city": "fake", "days": 1}


def test_it_sends_tool_results_back_in_anthropic_form(handler: LLMHandler, fake_upstream_url: str) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "user", "content": "Thanks. And tomorrow?"},
    ]
    model = "claude-roundtrip"

    result = handler.generate(
        f"an/{model}",
        messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=1.7,
        stop=["END"],
        user="user-42",
    )

    assert result.finish_reason == "tool_calls"
    body = last_body(fake_upstream_url, model)
    assert body["system"] == "You are terse."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris", "days": 1},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "text", "text": "Thanks. And tomorrow?"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert body["temperature"] == 1.0  # clamped to Anthropic's range
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert "top_p" not in body


def test_it_has_no_embeddings(handler: LLMHandler) -> None:
    with pytest.raises(BadRequestError, match="no embeddings"):
        handler.embed("an/claude", ["text"])


# ------------------------------------------------------------------------------- translation alone


def _body(messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    return to_anthropic_body(ChatRequest(model="claude", messages=messages, **kwargs), stream=False)


def test_tool_choice_keywords_are_translated() -> None:
    user = [{"role": "user", "content": "hi"}]
    assert _body(user, tools=[WEATHER_TOOL], tool_choice="auto")["tool_choice"] == {"type": "auto"}
    assert _body(user, tools=[WEATHER_TOOL], tool_choice="required")["tool_choice"] == {"type": "any"}
    assert _body(user, tools=[WEATHER_TOOL], tool_choice="none")["tool_choice"] == {"type": "none"}
    assert "tool_choice" not in _body(user, tool_choice="auto")  # no tools: nothing to choose


def test_images_and_developer_messages_are_translated() -> None:
    body = _body(
        [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
        ],
        top_p=0.9,
        stop="STOP",
    )
    assert body["system"] == "Be brief."
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert (body["top_p"], body["stop_sequences"]) == (0.9, ["STOP"])


def test_invalid_tool_arguments_are_a_bad_request() -> None:
    call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    with pytest.raises(BadRequestError):
        _body([{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [call]}])
