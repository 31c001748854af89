"""The OpenAI Agents SDK (``openai-agents``) against the gateway, over real HTTP.

An ``Agent`` with a function tool is run by ``Runner.run``: the model (the demo upstream, through the gateway)
calls the tool, the SDK runs it and sends its output back, and the model answers it in words. Once with the
SDK's default model, the Responses API (``/v1/responses``), once with ``OpenAIChatCompletionsModel``
(``/v1/chat/completions``). The fake upstream is deterministic: asking it directly for the conversation the
gateway sent gives the exact final answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import _openai_shared, get_default_model
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel

from accounts.services import apikey_create
from routing.models import StoredResponse
from routing.services import alias_upsert
from tests.fixtures import Fake, Gateway

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "What is the weather in Paris?"
TOOL_OUTPUT = "sunny and 21 degrees"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return TOOL_OUTPUT if city else "unknown"


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    # The SDK would export traces to OpenAI's servers: nothing leaves this machine.
    set_tracing_disabled(True)
    yield


def client_for(gateway: Gateway) -> AsyncOpenAI:
    key = apikey_create(name="agents")[1]
    return AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)


@contextlib.contextmanager
def default_client(gateway: Gateway) -> Iterator[None]:
    """The gateway as the SDK's default client (a process-wide setting: the previous one is put back)."""
    previous = _openai_shared.get_default_openai_client()
    set_default_openai_client(client_for(gateway), use_for_tracing=False)
    try:
        yield
    finally:
        _openai_shared.set_default_openai_client(previous)  # type: ignore[arg-type]


def sent_upstream(fake: Fake, model: str) -> dict[str, Any]:
    last = fake.stats()["last"]
    assert isinstance(last, dict)
    body = last[model]
    assert isinstance(body, dict)
    return body


def direct_answer(fake: Fake, model: str, messages: Any, tools: Any, max_tokens: int = 256) -> str:
    """What the fake upstream itself answers this conversation: the agent's final output must be it."""
    direct = OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    completion = direct.chat.completions.create(model=model, messages=messages, tools=tools, max_tokens=max_tokens)
    return completion.choices[0].message.content or ""


def run(agent: Agent[Any], question: str) -> Any:
    return asyncio.run(Runner.run(agent, question))


def assert_tool_round_trip(result: Any, fake: Fake) -> None:
    """The model called get_weather, the SDK ran it, and its output went back to the model, which answered."""
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    outputs = [item for item in result.new_items if item.type == "tool_call_output_item"]
    assert [item.type for item in result.new_items] == [
        "tool_call_item",
        "tool_call_output_item",
        "message_output_item",
    ]
    assert (calls[0].raw_item.name, json.loads(calls[0].raw_item.arguments)) == ("get_weather", {"city": "fake"})
    assert outputs[0].output == TOOL_OUTPUT

    sent = sent_upstream(fake, "demo-smart")  # the tools category's chain starts with demo-smart
    call_id = calls[0].raw_item.call_id
    tool_message = sent["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": call_id, "content": TOOL_OUTPUT}
    assert sent["messages"][-2]["tool_calls"][0]["id"] == call_id
    assert result.final_output == direct_answer(fake, "demo-smart", sent["messages"], sent["tools"])
    assert len(result.final_output.split()) == 16


def test_an_agent_on_the_default_responses_model_calls_its_tool(gateway: Gateway, fake: Fake) -> None:
    agent = Agent(
        name="weather",
        instructions="Answer with the weather.",
        model=OpenAIResponsesModel(model="router", openai_client=client_for(gateway)),
        tools=[get_weather],
    )
    result = run(agent, QUESTION)

    assert_tool_round_trip(result, fake)
    sent = sent_upstream(fake, "demo-smart")
    assert sent["messages"][:2] == [
        {"role": "system", "content": "Answer with the weather."},
        {"role": "user", "content": QUESTION},
    ]
    [tool] = sent["tools"]
    assert (tool["function"]["name"], tool["function"]["strict"]) == ("get_weather", True)
    assert tool["function"]["parameters"]["required"] == ["city"]
    # Two /v1/responses calls, each kept (store defaults to true): the tool call, then the answer.
    ids = [raw.response_id for raw in result.raw_responses]
    assert StoredResponse.objects.filter(id__in=ids).count() == 2


def test_set_default_openai_client_routes_every_agent_through_the_gateway(gateway: Gateway, fake: Fake) -> None:
    with default_client(gateway):
        result = run(Agent(name="weather", model="router", tools=[get_weather]), QUESTION)

    assert_tool_round_trip(result, fake)
    # The SDK's default model is the Responses API: both turns were /v1/responses calls.
    ids = [raw.response_id for raw in result.raw_responses]
    assert StoredResponse.objects.filter(id__in=ids).count() == 2


def test_an_agent_on_the_chat_completions_model_calls_its_tool(gateway: Gateway, fake: Fake) -> None:
    agent = Agent(
        name="weather",
        instructions="Answer with the weather.",
        model=OpenAIChatCompletionsModel(model="router", openai_client=client_for(gateway)),
        tools=[get_weather],
    )
    result = run(agent, QUESTION)

    assert_tool_round_trip(result, fake)
    assert StoredResponse.objects.count() == 0  # chat completions store nothing


def test_a_streamed_agent_run_gives_the_same_answer(gateway: Gateway, fake: Fake) -> None:
    agent = Agent(
        name="weather",
        model=OpenAIResponsesModel(model="router", openai_client=client_for(gateway)),
        tools=[get_weather],
    )

    async def streamed() -> tuple[Any, list[str]]:
        result = Runner.run_streamed(agent, QUESTION)
        deltas = [
            event.data.delta
            async for event in result.stream_events()
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
        ]
        return result, deltas

    result, deltas = asyncio.run(streamed())
    assert_tool_round_trip(result, fake)
    assert "".join(deltas) == result.final_output


class Weather(BaseModel):
    city: str
    degrees: int
    sunny: bool


def test_an_agent_with_an_output_type_answers_the_parsed_object_after_its_tool(gateway: Gateway, fake: Fake) -> None:
    agent = Agent(
        name="weather",
        model=OpenAIResponsesModel(model="router", openai_client=client_for(gateway)),
        tools=[get_weather],
        output_type=Weather,
    )
    result = run(agent, QUESTION)

    assert isinstance(result.final_output, Weather)
    sent = sent_upstream(fake, "demo-smart")
    assert sent["messages"][-1]["content"] == TOOL_OUTPUT
    response_format = sent["response_format"]
    assert (response_format["type"], response_format["json_schema"]["name"]) == ("json_schema", "final_output")
    direct = OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    expected = direct.chat.completions.create(
        model="demo-smart", messages=sent["messages"], tools=sent["tools"], response_format=response_format
    )
    assert result.final_output == Weather.model_validate_json(expected.choices[0].message.content or "")


def test_runs_chained_by_previous_response_id_keep_the_conversation_server_side(gateway: Gateway, fake: Fake) -> None:
    agent = Agent(
        name="weather",
        model=OpenAIResponsesModel(model="router", openai_client=client_for(gateway)),
        tools=[get_weather],
        model_settings=ModelSettings(temperature=0.3, top_p=0.9, max_tokens=40),
    )

    async def two_runs() -> tuple[Any, Any]:
        # Each request sends only the new items and the previous response's id: the gateway's stored responses
        # carry the conversation.
        first = await Runner.run(agent, QUESTION, auto_previous_response_id=True)
        second = await Runner.run(agent, "And tomorrow?", previous_response_id=first.last_response_id)
        return first, second

    first, second = asyncio.run(two_runs())
    sent = sent_upstream(fake, "demo-smart")
    first_call = first.new_items[0].raw_item.call_id
    second_call = second.new_items[0].raw_item.call_id

    def turn(call_id: str) -> list[dict[str, Any]]:
        call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"fake"}'}}
        return [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call_id, "content": TOOL_OUTPUT},
        ]

    assert sent["messages"] == [
        {"role": "user", "content": QUESTION},
        *turn(first_call),
        {"role": "assistant", "content": first.final_output},
        {"role": "user", "content": "And tomorrow?"},
        *turn(second_call),
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (40, 0.3, 0.9)
    assert second.final_output == direct_answer(fake, "demo-smart", sent["messages"], sent["tools"], max_tokens=40)


def test_an_agent_without_a_model_lands_where_an_alias_of_the_sdks_default_points(gateway: Gateway, fake: Fake) -> None:
    # The SDK sends its own default model name when an Agent names none: an alias maps it to a model (one that
    # a request with tools would not be routed to otherwise: the tools category starts with demo-smart).
    alias_upsert(name=get_default_model(), target="demo/demo-fast")
    with default_client(gateway):
        result = run(Agent(name="coder", tools=[get_weather]), QUESTION)

    assert fake.stats()["requests"] == {"demo-fast": 2}  # the tool call, then the answer
    assert sent_upstream(fake, "demo-fast")["messages"][-1] == {
        "role": "tool",
        "tool_call_id": result.new_items[0].raw_item.call_id,
        "content": TOOL_OUTPUT,
    }
    stored = StoredResponse.objects.get(id=result.last_response_id)
    assert stored.body["model"] == "demo/demo-fast"
