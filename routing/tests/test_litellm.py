"""litellm against the gateway as an OpenAI-compatible endpoint (``model="openai/<gateway model>"``,
``api_base``), over real HTTP: a streamed answer and a tool call, compared with the fake upstream's own."""

from __future__ import annotations

import os
from typing import Any

import pytest
from openai import OpenAI

from accounts.services import apikey_create
from tests.fixtures import Fake, Gateway

pytestmark = pytest.mark.django_db(transaction=True)

# litellm fetches its model price list from GitHub at import unless told to use the copy it ships.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

HELLO: Any = [{"role": "user", "content": "hello there"}]
WEATHER: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def direct(fake: Fake) -> OpenAI:
    return OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_litellm_streams_and_calls_a_tool(gateway: Gateway, fake: Fake) -> None:
    import litellm

    options: Any = {"api_base": gateway.url + "/v1", "api_key": apikey_create(name="litellm")[1], "timeout": 30}
    chunks = list(litellm.completion(model="openai/router", messages=HELLO, max_tokens=6, stream=True, **options))
    expected = direct(fake).chat.completions.create(model="demo-fast", messages=HELLO, max_tokens=6)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length"]

    answer = litellm.completion(model="openai/router", messages=WEATHER, tools=[WEATHER_TOOL], **options)
    routed = direct(fake).chat.completions.create(model="demo-smart", messages=WEATHER, tools=[WEATHER_TOOL])
    [call] = answer.choices[0].message.tool_calls
    [want] = routed.choices[0].message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        want.id,
        "get_weather",
        want.function.arguments,  # type: ignore[union-attr]
    )
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.model == "demo/demo-smart"
    assert answer.usage.total_tokens == routed.usage.total_tokens  # type: ignore[union-attr]
