"""Structured outputs through ``/v1/responses``: ``client.responses.parse(..., text_format=Model)`` and
``text={"format": {"type": "json_object"}}``, with the official ``openai`` SDK over real HTTP.

The door turns ``text.format`` into ``Call.params["response_format"]``: the demo provider (OpenAI kind) passes it
on and the fake upstream answers JSON valid against the schema; an Anthropic-kind provider translates it to a
forced tool whose input is the answer. The fake upstream is deterministic: asking it directly gives the exact
value the parsed answer must be.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from accounts.services import apikey_create
from routing.models import LLMModel, Provider, StoredResponse
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway

pytestmark = pytest.mark.django_db(transaction=True)


class Weather(BaseModel):
    city: str
    degrees: int
    sunny: bool


# What the SDK sends for Weather (strict: closed, every property required).
WEATHER_SCHEMA = {
    "properties": {
        "city": {"title": "City", "type": "string"},
        "degrees": {"title": "Degrees", "type": "integer"},
        "sunny": {"title": "Sunny", "type": "boolean"},
    },
    "required": ["city", "degrees", "sunny"],
    "title": "Weather",
    "type": "object",
    "additionalProperties": False,
}
HELLO: Any = [{"role": "user", "content": "hello there"}]
JSON_PLEASE = "hello there, answer in json"


def sdk(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key=apikey_create(name="parse")[1], max_retries=0, timeout=30)


def direct(fake: Fake) -> OpenAI:
    """The fake upstream itself, over chat completions: what the door's translation must come back with."""
    return OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def sent_upstream(fake: Fake, model: str) -> dict[str, Any]:
    last = fake.stats()["last"]
    assert isinstance(last, dict)
    body = last[model]
    assert isinstance(body, dict)
    return body


@pytest.fixture
def claude(gateway: Gateway, fake: Fake) -> str:
    """An Anthropic-kind provider on the fake upstream's Messages API; its model's id."""
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=fake.url)
    LLMModel.objects.create(provider=provider, name="claude-fake")
    routing_changed()
    return "claude/claude-fake"


# --- the demo upstream (OpenAI kind): the format passed on -------------------------------------------------


def test_parse_with_a_pydantic_model_returns_the_parsed_object(gateway: Gateway, fake: Fake) -> None:
    response = sdk(gateway).responses.parse(model="router", input="hello there", text_format=Weather)
    expected = direct(fake).chat.completions.parse(model="demo-fast", messages=HELLO, response_format=Weather)

    assert isinstance(response.output_parsed, Weather)
    assert response.output_parsed == expected.choices[0].message.parsed
    assert response.output_text == expected.choices[0].message.content
    assert response.status == "completed"
    sent = sent_upstream(fake, "demo-fast")["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "Weather", "schema": WEATHER_SCHEMA, "strict": True},
    }
    # The Response echoes the format it was asked for, and the stored body is what the client got.
    assert response.text is not None and response.text.format is not None
    assert (response.text.format.type, response.text.format.name) == ("json_schema", "Weather")  # type: ignore[union-attr]
    assert StoredResponse.objects.get(id=response.id).body["output"][0]["content"][0]["text"] == response.output_text


def test_a_streamed_parse_gives_the_parsed_object_at_the_end(gateway: Gateway, fake: Fake) -> None:
    with sdk(gateway).responses.stream(model="router", input="hello there", text_format=Weather) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    expected = direct(fake).chat.completions.parse(model="demo-fast", messages=HELLO, response_format=Weather)

    assert final.output_parsed == expected.choices[0].message.parsed
    assert "".join(deltas) == expected.choices[0].message.content
    assert len(deltas) > 1  # token by token, as the upstream streamed it
    assert sent_upstream(fake, "demo-fast")["response_format"]["json_schema"]["name"] == "Weather"


def test_json_object_format_answers_json(gateway: Gateway, fake: Fake) -> None:
    response = sdk(gateway).responses.create(
        model="demo/demo-fast", input=JSON_PLEASE, text={"format": {"type": "json_object"}}, max_output_tokens=50
    )
    expected = direct(fake).chat.completions.create(
        model="demo-fast",
        messages=[{"role": "user", "content": JSON_PLEASE}],
        response_format={"type": "json_object"},
        max_tokens=50,
    )

    assert response.output_text == expected.choices[0].message.content
    assert list(json.loads(response.output_text)) == ["answer"]
    assert sent_upstream(fake, "demo-fast")["response_format"] == {"type": "json_object"}
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_object"


def test_json_object_without_the_word_json_is_the_upstreams_400(gateway: Gateway, fake: Fake) -> None:
    # OpenAI refuses json_object when no message says "json"; the demo upstream too, and the door relays it.
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).responses.create(model="demo/demo-fast", input="hello", text={"format": {"type": "json_object"}})
    assert (caught.value.status_code, caught.value.code) == (400, "upstream_bad_request")
    assert caught.value.body["message"] == (  # type: ignore[index]
        "The upstream model refused the request: 'messages' must contain the word 'json' in some form, "
        "to use 'response_format' of type 'json_object'."
    )
    assert StoredResponse.objects.count() == 0


# --- an Anthropic-kind provider: the format becomes a forced tool ----------------------------------------------


def test_an_anthropic_provider_answers_parse_with_the_parsed_object(gateway: Gateway, fake: Fake, claude: str) -> None:
    response = sdk(gateway).responses.parse(model=claude, input="hello there", text_format=Weather)

    # The fake fills a forced tool's input with placeholders: "fake", 1, true.
    assert response.output_parsed == Weather(city="fake", degrees=1, sunny=True)
    assert [item.type for item in response.output] == ["message"]  # the answer, not a function call
    assert (response.status, response.model) == ("completed", claude)
    sent = sent_upstream(fake, "claude-fake")
    assert sent["tool_choice"] == {"type": "tool", "name": "Weather"}
    [tool] = sent["tools"]
    assert (tool["name"], tool["input_schema"]["required"]) == ("Weather", ["city", "degrees", "sunny"])


def test_an_anthropic_provider_streams_a_parse(gateway: Gateway, fake: Fake, claude: str) -> None:
    with sdk(gateway).responses.stream(model=claude, input="hello there", text_format=Weather) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()

    assert final.output_parsed == Weather(city="fake", degrees=1, sunny=True)
    assert "response.function_call_arguments.delta" not in types
    assert types[-1] == "response.completed"
    assert sent_upstream(fake, "claude-fake")["tool_choice"] == {"type": "tool", "name": "Weather"}


def test_an_anthropic_provider_answers_json_object_with_json(gateway: Gateway, fake: Fake, claude: str) -> None:
    response = sdk(gateway).responses.create(model=claude, input=JSON_PLEASE, text={"format": {"type": "json_object"}})

    assert json.loads(response.output_text) == {}  # the fake fills an open object's input with nothing
    sent = sent_upstream(fake, "claude-fake")
    assert sent["tool_choice"] == {"type": "tool", "name": "json_answer"}
    assert [tool["input_schema"] for tool in sent["tools"]] == [{"type": "object"}]
