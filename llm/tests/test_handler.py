"""LLMHandler over real HTTP against the fake upstream: generate, stream, tools, usage, timings, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import urllib.request
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest

from llm import (
    BadRequestError,
    GenerationParams,
    LLMHandler,
    ProviderConfig,
    ProviderNotConfiguredError,
    RetryPolicy,
    StreamEvent,
    count_message_tokens,
    count_tokens,
    split_model_id,
)
from llm.providers import AnthropicProvider, OpenAICompatProvider

NO_RETRY = RetryPolicy(max_attempts=1)
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "boolean"}},
            "required": ["city", "celsius"],
        },
    },
}


def configs(url: str) -> list[ProviderConfig]:
    return [
        ProviderConfig(name="fake", kind="openai_compatible", base_url=f"{url}/v1", api_key="sk-test"),
        ProviderConfig(name="openai", kind="openai", base_url=f"{url}/v1", api_key="sk-test"),
        ProviderConfig(name="local", kind="ollama", base_url=f"{url}/v1"),
        ProviderConfig(name="az", kind="azure", base_url=url, api_key="az-key", api_version="2024-10-21"),
        ProviderConfig(name="an", kind="anthropic", base_url=url, api_key="sk-ant"),
    ]


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
    with LLMHandler(configs(fake_upstream_url), retry=NO_RETRY) as llm:
        yield llm


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_fake/stats", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def last_body(url: str, model: str) -> dict[str, Any]:
    body: dict[str, Any] = stats(url)["last"][model]
    return body


# ------------------------------------------------------------------------------------------ generate


def test_generate_returns_text_usage_and_timings(handler: LLMHandler) -> None:
    messages = [{"role": "user", "content": "Tell me about rivers."}]

    result = handler.generate("fake/demo-fast@tokens=7", messages)

    assert (result.finish_reason, result.tool_calls, result.provider) == ("stop", (), "fake")
    assert result.model == "demo-fast@tokens=7"
    assert len(result.text.split()) == 7
    assert result.usage.completion_tokens == 7 == count_tokens(result.text)
    assert result.usage.prompt_tokens == count_message_tokens(messages)
    assert result.usage.total_tokens == result.usage.prompt_tokens + 7
    assert result.usage.estimated is False
    assert result.timings.ttft_ms is None and result.timings.tokens_per_sec is None
    assert result.timings.total_ms > 0


def test_prompt_and_system_become_messages(handler: LLMHandler, fake_upstream_url: str) -> None:
    handler.generate("fake/sys-check", prompt="Hello", system="Be brief.", temperature=0.2, top_p=0.5, max_tokens=9)

    body = last_body(fake_upstream_url, "sys-check")
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.5, 9)
    assert "stream" not in body and "tools" not in body and "user" not in body


def test_a_system_prompt_is_prepended_to_messages(handler: LLMHandler, fake_upstream_url: str) -> None:
    handler.generate("fake/sys-prepend", [{"role": "user", "content": "Hi"}], system="S", user="u-1", stop="END")
    body = last_body(fake_upstream_url, "sys-prepend")
    assert body["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    assert (body["user"], body["stop"]) == ("u-1", "END")


def test_it_needs_exactly_one_of_messages_and_prompt(handler: LLMHandler) -> None:
    with pytest.raises(BadRequestError):
        handler.generate("fake/m")
    with pytest.raises(BadRequestError):
        handler.generate("fake/m", [{"role": "user", "content": "x"}], prompt="x")
    with pytest.raises(BadRequestError):
        handler.generate("fake/m", [])


def test_max_tokens_caps_the_output(handler: LLMHandler) -> None:
    result = handler.generate("fake/capped@tokens=20", prompt="Hi", max_tokens=4)
    assert (result.finish_reason, result.usage.completion_tokens) == ("length", 4)


def test_generation_params_can_be_passed_as_one_object(handler: LLMHandler, fake_upstream_url: str) -> None:
    params = GenerationParams(temperature=0.0, max_tokens=3)
    result = handler.generate("fake/params", prompt="Hi", **params.as_kwargs())
    assert result.usage.completion_tokens == 3
    assert last_body(fake_upstream_url, "params")["temperature"] == 0.0


def test_the_model_id_is_split_on_the_first_slash(handler: LLMHandler, fake_upstream_url: str) -> None:
    assert split_model_id("openrouter/meta-llama/llama-3-8b") == ("openrouter", "meta-llama/llama-3-8b")

    result = handler.generate("fake/meta-llama/llama-3-8b@tokens=2", prompt="Hi")

    assert (result.provider, result.model) == ("fake", "meta-llama/llama-3-8b@tokens=2")
    assert stats(fake_upstream_url)["requests"]["meta-llama/llama-3-8b@tokens=2"] >= 1


def test_usage_is_counted_locally_when_the_upstream_reports_none(handler: LLMHandler) -> None:
    unknown = handler.generate("fake/demo-quiet@tokens=5,usage=0", prompt="Hi")
    assert (unknown.usage.completion_tokens, unknown.usage.estimated) == (5, True)
    assert unknown.usage.prompt_tokens == count_message_tokens([{"role": "user", "content": "Hi"}])

    known = handler.generate("fake/gpt-4o-mini@tokens=5,usage=0", prompt="Hi")
    assert (known.usage.completion_tokens, known.usage.estimated) == (5, False)


def test_it_returns_tool_calls(handler: LLMHandler) -> None:
    result = handler.generate("fake/tooly", prompt="Weather in Rome?", tools=[WEATHER_TOOL], tool_choice="auto")

    assert (result.finish_reason, result.text) == ("tool_calls", "")
    (call,) = result.tool_calls
    assert call.name == "get_weather" and call.id
    assert json.loads(call.arguments) == {"city": "fake", "celsius": True}


def test_the_injected_clock_measures_timings(fake_upstream_url: str) -> None:
    ticks = itertools.count(start=100.0, step=0.25)
    with LLMHandler(configs(fake_upstream_url), clock=lambda: next(ticks)) as llm:
        result = llm.generate("fake/clocked@tokens=3", prompt="Hi")
        events = list(llm.stream("fake/clocked-stream@tokens=3", prompt="Hi"))

    assert result.timings.total_ms == 250.0  # start and end: one tick apart
    done = events[-1].result
    assert done is not None
    # start, first delta, end: one tick apart each; 2 tokens after the first over 0.25 s.
    assert (done.timings.ttft_ms, done.timings.total_ms, done.timings.tokens_per_sec) == (250.0, 500.0, 8.0)


def test_reasoning_models_get_max_completion_tokens(handler: LLMHandler, fake_upstream_url: str) -> None:
    handler.generate("openai/o3-mini", prompt="Hi", max_tokens=12)
    body = last_body(fake_upstream_url, "o3-mini")
    assert body["max_completion_tokens"] == 12
    assert "max_tokens" not in body and "temperature" not in body


def test_ollama_and_azure_kinds_talk_to_their_endpoints(handler: LLMHandler, fake_upstream_url: str) -> None:
    assert handler.generate("local/llama3@tokens=2", prompt="Hi").usage.completion_tokens == 2

    result = handler.generate("az/my-deployment@tokens=3", prompt="Hi")
    assert result.usage.completion_tokens == 3
    assert stats(fake_upstream_url)["requests"]["my-deployment@tokens=3"] >= 1


# -------------------------------------------------------------------------------------------- stream


def test_stream_yields_deltas_then_the_full_result(handler: LLMHandler) -> None:
    events = list(handler.stream("fake/streamer@tokens=6", prompt="Hi"))

    deltas, done = events[:-1], events[-1]
    assert len(deltas) == 6 and all(event.type == "delta" and event.content for event in deltas)
    assert done.type == "done" and done.result is not None
    assert done.result.text == "".join(event.content for event in deltas)
    assert done.result.finish_reason == done.finish_reason == "stop"
    assert (done.result.usage.completion_tokens, done.result.usage.estimated) == (6, False)
    timings = done.result.timings
    assert timings.ttft_ms is not None and 0 <= timings.ttft_ms <= timings.total_ms
    assert timings.tokens_per_sec is not None and timings.tokens_per_sec > 0


def test_stream_asks_for_usage(handler: LLMHandler, fake_upstream_url: str) -> None:
    list(handler.stream("fake/usage-ask", prompt="Hi"))
    body = last_body(fake_upstream_url, "usage-ask")
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})


def test_stream_falls_back_when_stream_options_are_rejected(handler: LLMHandler, fake_upstream_url: str) -> None:
    model = "picky@stream_options=0,tokens=4"

    first = list(handler.stream(f"fake/{model}", prompt="Hi"))[-1].result
    second = list(handler.stream(f"fake/{model}", prompt="Hi"))[-1].result

    assert first is not None and second is not None
    assert (first.usage.completion_tokens, first.usage.estimated) == (4, True)
    assert second.text == first.text
    # The fake counts the two answered requests (it refuses the first one before counting); the second
    # stream went out without stream_options at once.
    assert stats(fake_upstream_url)["requests"][model] == 2
    assert "stream_options" not in last_body(fake_upstream_url, model)


def test_stream_measures_time_to_first_token(handler: LLMHandler) -> None:
    done = list(handler.stream("fake/ttft@ttft_ms=100,tokens=2", prompt="Hi"))[-1].result
    assert done is not None and done.timings.ttft_ms is not None
    assert done.timings.ttft_ms >= 100
    assert done.timings.ttft_ms <= done.timings.total_ms


def test_stream_yields_tool_call_deltas(handler: LLMHandler) -> None:
    events = list(handler.stream("fake/stream-tools", prompt="Weather?", tools=[WEATHER_TOOL]))

    deltas = [delta for event in events[:-1] for delta in event.tool_calls]
    assert deltas[0].id and deltas[0].name == "get_weather" and deltas[0].index == 0
    done = events[-1].result
    assert done is not None and done.finish_reason == "tool_calls"
    (call,) = done.tool_calls
    assert call.arguments == "".join(delta.arguments for delta in deltas)
    assert json.loads(call.arguments) == {"city": "fake", "celsius": True}


def test_a_stream_closed_early_releases_its_connection(handler: LLMHandler) -> None:
    stream = handler.stream("fake/early@tokens=50", prompt="Hi")
    first = next(stream)
    assert first.type == "delta"
    stream.close()
    # The pool still works (the broken-off response was closed, not leaked).
    assert handler.generate("fake/after-early@tokens=1", prompt="Hi").usage.completion_tokens == 1


def test_stream_checks_its_arguments_at_once(handler: LLMHandler) -> None:
    with pytest.raises(ProviderNotConfiguredError):
        handler.stream("missing/model", prompt="Hi")
    with pytest.raises(BadRequestError):
        handler.astream("fake/model")


# --------------------------------------------------------------------------------------------- async


def test_agenerate_and_astream(handler: LLMHandler) -> None:
    async def scenario() -> tuple[str, list[StreamEvent]]:
        result = await handler.agenerate("fake/async@tokens=3", prompt="Hi", system="S")
        events = [event async for event in handler.astream("fake/async@tokens=3", prompt="Hi", system="S")]
        return result.text, events

    text, events = run(handler, scenario())
    done = events[-1].result
    assert done is not None
    assert done.text == text == "".join(event.content for event in events[:-1])
    assert done.usage.completion_tokens == 3


def test_astream_with_tools_and_early_exit(handler: LLMHandler) -> None:
    async def scenario() -> None:
        events = [event async for event in handler.astream("fake/atools", prompt="W?", tools=[WEATHER_TOOL])]
        assert events[-1].result is not None and events[-1].result.tool_calls[0].name == "get_weather"
        async with contextlib.aclosing(handler.astream("fake/aearly@tokens=40", prompt="Hi")) as stream:
            async for event in stream:
                assert event.type == "delta"
                break

    run(handler, scenario())


def test_the_handler_works_from_several_event_loops(handler: LLMHandler) -> None:
    # As with asyncio.run per Celery task: the first loop ends without closing its pool.
    first = asyncio.run(handler.agenerate("fake/loops@tokens=2", prompt="Hi"))
    second = run(handler, handler.agenerate("fake/loops@tokens=2", prompt="Hi"))
    assert first.text == second.text


# ----------------------------------------------------------------------------------------- embeddings


def test_embed_returns_one_vector_per_input(handler: LLMHandler) -> None:
    result = handler.embed("fake/demo-embed", ["hello world", "goodbye"])

    assert len(result.vectors) == 2 and all(len(vector) == 64 for vector in result.vectors)
    assert result.vectors[0] != result.vectors[1]
    assert result.model == "demo-embed"
    assert (
        result.usage.prompt_tokens == result.usage.total_tokens == count_tokens("hello world") + count_tokens("goodbye")
    )
    assert result.usage.completion_tokens == 0


def test_aembed_matches_embed(handler: LLMHandler) -> None:
    sync = handler.embed("fake/demo-embed@dim=8", ["same text"])
    both = run(handler, handler.aembed("fake/demo-embed@dim=8", ["same text"]))
    assert both.vectors == sync.vectors and len(sync.vectors[0]) == 8


# --------------------------------------------------------------------------------------- the rest


def test_providers_are_created_once_and_lazily(fake_upstream_url: str) -> None:
    llm = LLMHandler(configs(fake_upstream_url))
    assert llm.provider_names == ("fake", "openai", "local", "az", "an")

    first = llm.provider("fake")
    assert llm.provider("fake") is first
    assert isinstance(first, OpenAICompatProvider)
    assert isinstance(llm.provider("an"), AnthropicProvider)
    with pytest.raises(ProviderNotConfiguredError):
        llm.provider("nope")
    llm.close()
    llm.close()  # idempotent


def test_a_mapping_of_configs_is_accepted(fake_upstream_url: str) -> None:
    config = configs(fake_upstream_url)[0]
    with LLMHandler({"fake": config}) as llm:
        assert llm.generate("fake/mapped@tokens=1", prompt="Hi").usage.completion_tokens == 1


def test_count_tokens(handler: LLMHandler) -> None:
    assert handler.count_tokens("hello world") == 2
    assert handler.count_tokens("hello world", "openai/gpt-4o") == 2
    assert handler.count_tokens("") == 0
