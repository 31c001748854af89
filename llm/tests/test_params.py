"""Request params (`ChatRequest.params`): passed on by OpenAI-compatible providers, translated or refused by
Anthropic's, and what comes back (every choice, logprobs, system_fingerprint), against the fake upstream."""

from __future__ import annotations

import asyncio
import json
import pickle
import urllib.request
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from llm import (
    BadRequestError,
    ChatRequest,
    LLMHandler,
    ProviderConfig,
    RetryPolicy,
    StreamEvent,
    UnsupportedParameterError,
)
from llm.providers.anthropic import to_anthropic_body

NO_RETRY = RetryPolicy(max_attempts=1)
HELLO = [{"role": "user", "content": "hello there"}]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "degrees": {"type": "integer"}},
    "required": ["city", "degrees"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "Weather", "schema": SCHEMA, "strict": True}}
T = TypeVar("T")


def handler_for(url: str, *, drop_params: bool = False) -> LLMHandler:
    return LLMHandler(
        [
            ProviderConfig(name="oa", kind="openai_compatible", base_url=f"{url}/v1", drop_params=drop_params),
            ProviderConfig(name="an", kind="anthropic", base_url=url, drop_params=drop_params),
        ],
        retry=NO_RETRY,
    )


def run(handler: LLMHandler, awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        try:
            return await awaitable
        finally:
            await handler.aclose()

    return asyncio.run(main())


async def collect(handler: LLMHandler, model: str, **kwargs: Any) -> list[StreamEvent]:
    return [event async for event in handler.astream(model, HELLO, **kwargs)]


def last_body(url: str, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_fake/stats", timeout=5) as response:
        stats: dict[str, Any] = json.loads(response.read())
    body: dict[str, Any] = stats["last"][model]
    return body


# --- OpenAI-compatible: unchanged both ways ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["sync", "async"])
def test_params_reach_an_openai_compatible_upstream_and_every_choice_comes_back(fake_reset: str, path: str) -> None:
    handler = handler_for(fake_reset)
    params = {"n": 2, "seed": 9, "logprobs": True, "top_logprobs": 1, "custom": {"x": [1]}, "model": "not-this"}
    if path == "sync":
        result = handler.generate("oa/m", HELLO, max_tokens=3, params=params)
    else:
        result = run(handler, handler.agenerate("oa/m", HELLO, max_tokens=3, params=params))

    body = last_body(fake_reset, "m")
    assert {k: body[k] for k in ("n", "seed", "logprobs", "top_logprobs", "custom")} == {
        "n": 2,
        "seed": 9,
        "logprobs": True,
        "top_logprobs": 1,
        "custom": {"x": [1]},
    }
    assert body["model"] == "m"  # the provider's own fields win over a param of the same name
    assert [c.index for c in result.choices] == [0, 1]
    assert result.text == result.choices[0].text
    assert result.choices[0].text != result.choices[1].text
    assert [len(c.logprobs["content"]) for c in result.choices] == [3, 3]
    assert result.logprobs == result.choices[0].logprobs
    assert result.system_fingerprint == "fp_fake"
    assert result.usage.completion_tokens == 6


def test_a_stream_tells_each_choice_and_its_logprobs(fake_reset: str) -> None:
    handler = handler_for(fake_reset)
    events = run(handler, collect(handler, "oa/m", max_tokens=3, params={"n": 2, "logprobs": True}))

    deltas = [e for e in events if e.type == "delta"]
    assert sorted({e.index for e in deltas}) == [0, 1]
    assert all(len(e.logprobs["content"]) == 1 for e in deltas)
    assert {e.system_fingerprint for e in deltas} == {"fp_fake"}
    result = events[-1].result
    assert result is not None
    assert [c.text for c in result.choices] == ["".join(e.content for e in deltas if e.index == i) for i in (0, 1)]
    assert [c.finish_reason for c in result.choices] == ["length", "length"]
    assert [len(c.logprobs["content"]) for c in result.choices] == [3, 3]


def test_no_params_send_nothing_more(fake_reset: str) -> None:
    handler = handler_for(fake_reset)
    result = handler.generate("oa/m", HELLO, max_tokens=2)
    assert set(last_body(fake_reset, "m")) == {"model", "messages", "max_tokens", "temperature", "top_p"}
    assert (result.choices, result.logprobs, result.refusal) == ((), None, None)


@pytest.mark.parametrize("stream", [False, True])
def test_top_k_is_refused_by_an_openai_compatible_provider(fake_reset: str, stream: bool) -> None:
    # The Messages API's top_k (`ChatRequest.top_k`), unlike a chat client's own `top_k` param.
    handler = handler_for(fake_reset)
    with pytest.raises(UnsupportedParameterError) as caught:
        if stream:
            run(handler, collect(handler, "oa/m", top_k=5))
        else:
            run(handler, handler.agenerate("oa/m", HELLO, top_k=5))
    error = caught.value
    assert (error.param, error.code, error.retryable, error.provider) == ("top_k", "unsupported_parameter", False, "oa")
    with urllib.request.urlopen(f"{fake_reset}/_fake/stats", timeout=5) as response:
        assert json.loads(response.read())["requests"] == {}


def test_top_k_is_dropped_by_an_openai_compatible_provider_with_drop_params(fake_reset: str) -> None:
    handler = handler_for(fake_reset, drop_params=True)
    result = run(handler, handler.agenerate("oa/m", HELLO, max_tokens=2, top_k=5))
    assert set(last_body(fake_reset, "m")) == {"model", "messages", "max_tokens", "temperature", "top_p"}
    assert result.usage.completion_tokens == 2


# --- Anthropic: translated, refused or dropped -------------------------------------------------------------


def test_top_k_goes_to_anthropic_as_it_is(fake_reset: str) -> None:
    handler = handler_for(fake_reset)
    run(handler, handler.agenerate("an/claude", HELLO, max_tokens=2, top_k=7))
    assert last_body(fake_reset, "claude")["top_k"] == 7


def test_response_format_json_schema_becomes_a_forced_tool() -> None:
    request = ChatRequest(model="c", messages=HELLO, params={"response_format": JSON_SCHEMA})
    body = to_anthropic_body(request, stream=False)
    assert body["tools"] == [
        {
            "name": "Weather",
            "description": "Give your answer in this format: the input of this tool.",
            "input_schema": SCHEMA,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "Weather"}


def test_response_format_beside_tools_of_its_own_makes_some_tool_a_must() -> None:
    """With tool_choice auto, the answer is a tool call or the structured answer: never plain text."""
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    request = ChatRequest(
        model="c",
        messages=HELLO,
        tools=[tool],
        tool_choice="auto",
        params={"response_format": {"type": "json_object"}, "parallel_tool_calls": False, "top_k": 5},
    )
    body = to_anthropic_body(request, stream=False)
    assert [t["name"] for t in body["tools"]] == ["lookup", "json_answer"]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["top_k"] == 5


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_json_schema_answer_is_the_text(fake_reset: str, stream: bool) -> None:
    handler = handler_for(fake_reset)
    params = {"response_format": JSON_SCHEMA}
    if stream:
        events = run(handler, collect(handler, "an/claude", params=params))
        result = events[-1].result
        assert all(not e.tool_calls for e in events)
    else:
        result = run(handler, handler.agenerate("an/claude", HELLO, params=params))
    assert result is not None
    answer = json.loads(result.text)
    assert set(answer) == {"city", "degrees"}
    assert (result.finish_reason, result.tool_calls) == ("stop", ())


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"seed": 1}, "seed"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
    ],
)
def test_anthropic_refuses_what_it_cannot_honour(fake_reset: str, params: dict[str, Any], param: str) -> None:
    handler = handler_for(fake_reset)
    with pytest.raises(UnsupportedParameterError) as caught:
        run(handler, handler.agenerate("an/claude", HELLO, params=params))
    error = caught.value
    assert isinstance(error, BadRequestError)
    assert (error.param, error.code, error.retryable, error.provider) == (param, "unsupported_parameter", False, "an")
    assert pickle.loads(pickle.dumps(error)).as_dict()["param"] == param
    with pytest.raises(UnsupportedParameterError):
        run(handler, collect(handler, "an/claude", params=params))
    with urllib.request.urlopen(f"{fake_reset}/_fake/stats", timeout=5) as response:
        assert json.loads(response.read())["requests"] == {}


def test_anthropic_drops_them_with_drop_params(fake_reset: str) -> None:
    handler = handler_for(fake_reset, drop_params=True)
    params = {"logprobs": True, "n": 2, "seed": 1, "response_format": {"type": "json_object"}}
    result = run(handler, handler.agenerate("an/claude", HELLO, params=params))
    body = last_body(fake_reset, "claude")
    assert not {"logprobs", "n", "seed"} & set(body)
    assert body["tool_choice"] == {"type": "tool", "name": "json_answer"}
    assert isinstance(json.loads(result.text), dict)
