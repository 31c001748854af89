"""instructor (``instructor.from_openai(OpenAI(base_url=<gateway>))``): pydantic models extracted through
``/v1/chat/completions`` over real HTTP, in its modes that use the gateway's parameters:

- ``Mode.TOOLS``: the model's schema as a forced function tool; the answer is the tool call's arguments.
- ``Mode.JSON``: ``response_format`` json_object and the schema in a system message.
- ``Mode.JSON_SCHEMA``: ``response_format`` json_schema.
- ``Mode.TOOLS`` on ``instructor.from_anthropic``: a forced tool through ``/v1/messages``.

The fake upstream is deterministic: a forced tool's arguments are placeholders ("fake", 1, true), a json_object
answer is ``{"answer": <words>}`` and a json_schema answer a value drawn from the schema; asking it directly for
what the gateway sent gives the exact object instructor must return.
"""

from __future__ import annotations

import json
from typing import Any

import instructor
import pytest
from openai import OpenAI
from pydantic import BaseModel

from accounts.services import apikey_create
from routing.models import LLMModel, Provider
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway

pytestmark = pytest.mark.django_db(transaction=True)


class Weather(BaseModel):
    city: str
    degrees: int
    sunny: bool


class Answer(BaseModel):
    """The shape of the fake upstream's json_object answers."""

    answer: str


QUESTION: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


def patched(gateway: Gateway, mode: instructor.Mode) -> Any:
    raw = OpenAI(base_url=gateway.url + "/v1", api_key=apikey_create(name="instructor")[1], max_retries=0, timeout=30)
    return instructor.from_openai(raw, mode=mode)


def direct(fake: Fake) -> OpenAI:
    return OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def sent_upstream(fake: Fake, model: str) -> dict[str, Any]:
    last = fake.stats()["last"]
    assert isinstance(last, dict)
    body = last[model]
    assert isinstance(body, dict)
    return body


def test_tools_mode_extracts_the_model_from_a_forced_tool_call(gateway: Gateway, fake: Fake) -> None:
    client = patched(gateway, instructor.Mode.TOOLS)
    weather = client.chat.completions.create(model="router", response_model=Weather, messages=QUESTION, max_retries=0)

    # A Weather (compared by its fields: instructor keeps the raw completion on it, which == would compare too).
    assert isinstance(weather, Weather)
    assert weather.model_dump() == {"city": "fake", "degrees": 1, "sunny": True}
    sent = sent_upstream(fake, "demo-smart")  # a request with tools is routed to the tools category
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "Weather"}}
    [tool] = sent["tools"]
    assert (tool["function"]["name"], tool["function"]["parameters"]["required"]) == (
        "Weather",
        ["city", "degrees", "sunny"],
    )
    assert fake.stats()["requests"] == {"demo-smart": 1}  # no retry: the first answer validated


def test_json_mode_extracts_the_model_from_a_json_object_answer(gateway: Gateway, fake: Fake) -> None:
    client = patched(gateway, instructor.Mode.JSON)
    answer = client.chat.completions.create(
        model="demo/demo-fast", response_model=Answer, messages=QUESTION, max_tokens=50, max_retries=0
    )

    sent = sent_upstream(fake, "demo-fast")
    assert sent["response_format"] == {"type": "json_object"}
    system = sent["messages"][0]
    assert system["role"] == "system"
    assert json.dumps(Answer.model_json_schema(), indent=2) in system["content"]  # instructor's schema prompt
    expected = direct(fake).chat.completions.create(
        model="demo-fast", messages=sent["messages"], response_format={"type": "json_object"}, max_tokens=50
    )
    assert answer.model_dump() == json.loads(expected.choices[0].message.content or "")
    assert len(answer.answer.split()) == 16


def test_json_schema_mode_extracts_the_model_from_a_json_schema_answer(gateway: Gateway, fake: Fake) -> None:
    client = patched(gateway, instructor.Mode.JSON_SCHEMA)
    weather = client.chat.completions.create(model="router", response_model=Weather, messages=QUESTION, max_retries=0)

    sent = sent_upstream(fake, "demo-fast")
    response_format = sent["response_format"]
    assert (response_format["type"], response_format["json_schema"]["name"]) == ("json_schema", "Weather")
    assert response_format["json_schema"]["schema"]["required"] == ["city", "degrees", "sunny"]
    expected = direct(fake).chat.completions.create(
        model="demo-fast", messages=sent["messages"], response_format=response_format
    )
    assert weather.model_dump() == json.loads(expected.choices[0].message.content or "")


def test_tools_mode_streams_partial_objects_up_to_the_whole(gateway: Gateway, fake: Fake) -> None:
    client = patched(gateway, instructor.Mode.TOOLS)
    partials = list(
        client.chat.completions.create_partial(model="router", response_model=Weather, messages=QUESTION, max_retries=0)
    )

    assert len(partials) > 1
    assert partials[-1].model_dump() == {"city": "fake", "degrees": 1, "sunny": True}
    assert sent_upstream(fake, "demo-smart")["stream"] is True


def test_tools_mode_on_an_anthropic_provider(gateway: Gateway, fake: Fake) -> None:
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=fake.url)
    LLMModel.objects.create(provider=provider, name="claude-fake")
    routing_changed()
    client = patched(gateway, instructor.Mode.TOOLS)
    weather = client.chat.completions.create(
        model="claude/claude-fake", response_model=Weather, messages=QUESTION, max_retries=0
    )

    assert weather.model_dump() == {"city": "fake", "degrees": 1, "sunny": True}
    sent = sent_upstream(fake, "claude-fake")
    assert sent["tool_choice"] == {"type": "tool", "name": "Weather"}
    assert [tool["name"] for tool in sent["tools"]] == ["Weather"]


def test_anthropic_tools_mode_through_the_messages_door(gateway: Gateway, fake: Fake) -> None:
    # instructor on the Anthropic SDK (base_url: the gateway's host): /v1/messages, translated to the demo upstream.
    import anthropic

    raw = anthropic.Anthropic(base_url=gateway.url, api_key=apikey_create(name="instructor")[1], max_retries=0)
    client = instructor.from_anthropic(raw, mode=instructor.Mode.TOOLS)  # the provider comes from the client
    weather = client.messages.create(
        model="router", max_tokens=200, response_model=Weather, messages=QUESTION, max_retries=0
    )

    assert weather.model_dump() == {"city": "fake", "degrees": 1, "sunny": True}
    sent = sent_upstream(fake, "demo-smart")
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "Weather"}}
    assert sent["parallel_tool_calls"] is False  # instructor asks for one tool use: disable_parallel_tool_use
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["Weather"]
