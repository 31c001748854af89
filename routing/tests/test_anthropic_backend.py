"""Chat requests translated for an Anthropic-kind model (the fake upstream's Messages API), with the official
``openai`` SDK over real HTTP: tools beside a structured answer, reasoning effort, metadata, service tier and
refusals; and the Messages door's ``stop_sequence`` over an OpenAI-kind model."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from anthropic import Anthropic
from openai import OpenAI
from pydantic import BaseModel

from accounts.services import apikey_create
from routing.models import LLMModel, Provider
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)

HELLO: Any = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
    "description": "The weather in a city.",
}


class Weather(BaseModel):
    city: str
    degrees: int


RESPONSE_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {"name": "Weather", "schema": Weather.model_json_schema()},
}
ANSWER_TOOL = {
    "name": "Weather",
    "description": "Give your answer in this format: the input of this tool.",
    "input_schema": Weather.model_json_schema(),
}


@pytest.fixture
def claude(gateway: Gateway, fake: Fake) -> str:
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=fake.url)
    LLMModel.objects.create(provider=provider, name="claude-fake")
    routing_changed()
    return "claude/claude-fake"


def sdk(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key=apikey_create(name="an")[1], max_retries=0, timeout=30)


def sent(fake: Fake) -> dict[str, Any]:
    body = fake.stats()["last"]["claude-fake"]  # type: ignore[index]
    assert isinstance(body, dict)
    return body


# --- tools beside response_format ---------------------------------------------------------------------------


def test_with_tools_and_tool_choice_auto_a_tool_must_be_used_the_clients_or_the_answers(
    gateway: Gateway, fake: Fake, claude: str
) -> None:
    completion = sdk(gateway).chat.completions.create(
        model=claude, messages=HELLO, tools=[WEATHER_TOOL], response_format=RESPONSE_FORMAT
    )
    assert (sent(fake)["tools"], sent(fake)["tool_choice"]) == ([ANTHROPIC_WEATHER_TOOL, ANSWER_TOOL], {"type": "any"})
    # The fake calls the first tool it is offered: the client's, which comes back as a tool call.
    [tool_call] = completion.choices[0].message.tool_calls or []
    assert (tool_call.function.name, json.loads(tool_call.function.arguments)) == ("get_weather", {"city": "fake"})  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_with_tool_choice_none_the_answer_tool_is_forced(gateway: Gateway, fake: Fake, claude: str) -> None:
    completion = sdk(gateway).chat.completions.create(
        model=claude, messages=HELLO, tools=[WEATHER_TOOL], tool_choice="none", response_format=RESPONSE_FORMAT
    )
    assert sent(fake)["tool_choice"] == {"type": "tool", "name": "Weather"}
    assert [tool["name"] for tool in sent(fake)["tools"]] == ["get_weather", "Weather"]
    message = completion.choices[0].message
    assert message.tool_calls is None and completion.choices[0].finish_reason == "stop"
    assert Weather.model_validate_json(message.content or "")


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_when_the_client_forces_a_tool_no_answer_tool_is_offered(
    gateway: Gateway, fake: Fake, claude: str, tool_choice: Any
) -> None:
    completion = sdk(gateway).chat.completions.create(
        model=claude, messages=HELLO, tools=[WEATHER_TOOL], tool_choice=tool_choice, response_format=RESPONSE_FORMAT
    )
    assert sent(fake)["tools"] == [ANTHROPIC_WEATHER_TOOL]
    assert sent(fake)["tool_choice"] in ({"type": "any"}, {"type": "tool", "name": "get_weather"})
    assert completion.choices[0].finish_reason == "tool_calls"


# --- reasoning_effort, metadata, service_tier ---------------------------------------------------------------


@pytest.mark.parametrize(("effort", "max_tokens", "budget"), [("low", 2000, 1024), ("high", 3000, 2999)])
def test_reasoning_effort_becomes_a_thinking_budget(
    gateway: Gateway, fake: Fake, claude: str, effort: Any, max_tokens: int, budget: int
) -> None:
    completion = sdk(gateway).chat.completions.create(
        model=claude, messages=HELLO, reasoning_effort=effort, max_tokens=max_tokens, temperature=0.2
    )
    body = sent(fake)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert "temperature" not in body and "top_p" not in body  # Anthropic's own sampling while it thinks
    # The thinking block is not part of the answer: 16 words of text, the thinking tokens counted in usage.
    assert len((completion.choices[0].message.content or "").split()) == 16
    assert completion.usage is not None and completion.usage.completion_tokens > 16


def test_minimal_reasoning_effort_thinks_not_at_all(gateway: Gateway, fake: Fake, claude: str) -> None:
    sdk(gateway).chat.completions.create(model=claude, messages=HELLO, reasoning_effort="minimal", max_tokens=50)
    assert "thinking" not in sent(fake)


@pytest.mark.parametrize(
    "extra",
    [
        {"reasoning_effort": "low", "max_tokens": 500},  # no room for Anthropic's least budget (1024)
        {"reasoning_effort": "low", "max_tokens": 2000, "response_format": RESPONSE_FORMAT},  # a forced tool
    ],
)
def test_a_reasoning_effort_anthropic_cannot_think_with_is_a_400(
    gateway: Gateway, fake: Fake, claude: str, extra: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(model=claude, messages=HELLO, **extra)
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", "reasoning_effort")
    assert fake.stats()["requests"] == {}


def test_metadata_user_id_becomes_anthropics_unless_user_gives_it(gateway: Gateway, fake: Fake, claude: str) -> None:
    client = sdk(gateway)
    client.chat.completions.create(model=claude, messages=HELLO, metadata={"user_id": "u-1", "team": "a"})
    assert sent(fake)["metadata"] == {"user_id": "u-1"}
    client.chat.completions.create(model=claude, messages=HELLO, metadata={"user_id": "u-1"}, user="u-2")
    assert sent(fake)["metadata"] == {"user_id": "u-2"}
    client.chat.completions.create(model=claude, messages=HELLO, metadata={"team": "a"})
    assert "metadata" not in sent(fake)


def test_service_tier_maps_to_anthropics_or_is_refused(gateway: Gateway, fake: Fake, claude: str) -> None:
    client = sdk(gateway)
    client.chat.completions.create(model=claude, messages=HELLO, service_tier="auto")
    assert sent(fake)["service_tier"] == "auto"
    client.chat.completions.create(model=claude, messages=HELLO, service_tier="default")
    assert sent(fake)["service_tier"] == "standard_only"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=claude, messages=HELLO, service_tier="priority")
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", "service_tier")


# --- a refusal ----------------------------------------------------------------------------------------------


def test_an_anthropic_refusal_is_the_chat_refusal(gateway: Gateway, fake: Fake, claude: str) -> None:
    fake.configure(**{"claude-fake": {"content_filter": 1}})  # half the answer, then stop_reason "refusal"
    client = sdk(gateway)
    completion = client.chat.completions.create(model=claude, messages=HELLO)
    direct = call("POST", fake.url + "/v1/messages", {"model": "claude-fake", "messages": HELLO, "max_tokens": 256})
    said = direct.json()["content"][0]["text"]
    assert direct.json()["stop_reason"] == "refusal" and len(said.split()) == 8
    choice = completion.choices[0]
    assert (choice.finish_reason, choice.message.content, choice.message.refusal) == ("content_filter", None, said)

    chunks = list(client.chat.completions.create(model=claude, messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == said
    assert chunks[-1].choices[0].finish_reason == "content_filter"


# --- /v1/messages over an OpenAI-kind model: stop_sequence ----------------------------------------------------


def test_the_messages_door_reports_the_stop_sequence_that_ended_the_answer(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"echo": 1}})  # the answer is the prompt's words, "alpha beta gamma"
    client = Anthropic(base_url=gateway.url, api_key=apikey_create(name="an")[1], max_retries=0, timeout=30)
    question: Any = [{"role": "user", "content": "alpha beta gamma"}]
    ended = client.messages.create(
        model="demo/demo-fast", max_tokens=50, messages=question, stop_sequences=["zeta", "gamma"]
    )
    assert (ended.stop_reason, ended.stop_sequence) == ("stop_sequence", "gamma")
    assert fake.stats()["last"]["demo-fast"]["stop"] == ["zeta", "gamma"]  # type: ignore[index]

    with client.messages.stream(
        model="demo/demo-fast", max_tokens=50, messages=question, stop_sequences=["gamma"]
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "gamma")

    plain = client.messages.create(model="demo/demo-fast", max_tokens=50, messages=question, stop_sequences=["beta"])
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


def test_an_anthropic_refusal_is_a_refusal_part_of_a_response(gateway: Gateway, fake: Fake, claude: str) -> None:
    fake.configure(**{"claude-fake": {"content_filter": 1}})
    response = sdk(gateway).responses.create(model=claude, input="hello there")
    direct = call("POST", fake.url + "/v1/messages", {"model": "claude-fake", "messages": HELLO, "max_tokens": 256})
    [message] = response.output
    assert message.type == "message" and response.status == "completed"
    assert [part.to_dict() for part in message.content] == [
        {"type": "refusal", "refusal": direct.json()["content"][0]["text"]}
    ]
