"""The Responses API's other options through ``/v1/responses``, with the official ``openai`` SDK over real HTTP:
``GET …/input_items`` (paginated), ``include`` and ``background`` (refused), ``truncation``."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

from accounts.services import apikey_create
from llm import count_message_tokens
from routing.models import LLMModel, StoredResponse
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)


def new_key() -> str:
    return apikey_create(name="options")[1]


def sdk(gateway: Gateway, raw_key: str) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key=raw_key, max_retries=0, timeout=30)


CONVERSATION: Any = [
    {"role": "user", "content": "first question about the weather in Paris"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Rome"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "21 C"},
    {"role": "user", "content": "and tomorrow?"},
]


def test_input_items_are_listed_newest_first_and_paginated(gateway: Gateway, fake: Fake) -> None:
    key = new_key()
    client = sdk(gateway, key)
    response = client.responses.create(model="demo/demo-fast", input=CONVERSATION, max_output_tokens=3)

    page = client.responses.input_items.list(response.id)
    items = [item.to_dict() for item in page.data]
    ids = [str(item["id"]) for item in items]
    assert len(set(ids)) == 5 and ids[0].startswith("msg_") and ids[1].startswith("fco_") and ids[2].startswith("fc_")
    assert [{k: v for k, v in item.items() if k != "id"} for item in items[::-1]] == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "first question about the weather in Paris"}],
            "status": "completed",
        },
        {**CONVERSATION[1], "status": "completed"},
        {**CONVERSATION[2], "status": "completed"},
        {**CONVERSATION[3], "status": "completed"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "and tomorrow?"}],
            "status": "completed",
        },
    ]
    assert page.has_more is False

    first = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert ([item.id for item in first.data], first.has_more) == (ids[::-1][:2], True)
    rest = call(
        "GET", f"{gateway.url}/v1/responses/{response.id}/input_items?order=asc&limit=2&after={ids[3]}", key=key
    ).json()
    assert rest == {
        "object": "list",
        "data": [items[2], items[1]],
        "first_id": ids[2],
        "last_id": ids[1],
        "has_more": True,
    }
    # The SDK's auto-pagination walks every page.
    assert [item.id for item in client.responses.input_items.list(response.id, limit=2)] == ids

    with pytest.raises(openai.NotFoundError):
        sdk(gateway, new_key()).responses.input_items.list(response.id)  # another key's
    bad = call("GET", f"{gateway.url}/v1/responses/{response.id}/input_items?limit=0", key=key)
    assert (bad.status, bad.json()["error"]["param"]) == (400, "limit")


def test_a_string_input_is_one_message_item(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    response = client.responses.create(model="demo/demo-fast", input="hello there", max_output_tokens=3)
    [item] = client.responses.input_items.list(response.id).data
    assert item.to_dict() == {
        "id": item.id,
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hello there"}],
        "status": "completed",
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"background": True}, "background"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_unsupported_parameter(
    gateway: Gateway, fake: Fake, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, new_key()).responses.create(model="demo/demo-fast", input="hi", **extra)
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", param)
    assert StoredResponse.objects.count() == 0
    assert fake.stats()["requests"] == {}


def test_asking_for_nothing_is_served(gateway: Gateway, fake: Fake) -> None:
    response = sdk(gateway, new_key()).responses.create(
        model="demo/demo-fast", input="hi", include=[], background=False, truncation="disabled", max_output_tokens=2
    )
    assert (response.status, response.truncation) == ("incomplete", "disabled")


def sent_messages(fake: Fake) -> Any:
    return fake.stats()["last"]["demo-fast"]["messages"]  # type: ignore[index]


def test_truncation_auto_drops_the_oldest_items_to_fit_the_context_window(gateway: Gateway, fake: Fake) -> None:
    messages = [
        {"role": "user", "content": "the first question, with many words in it to take room"},
        {"role": "assistant", "content": "the first answer"},
        {"role": "user", "content": "the second question"},
    ]
    max_tokens = 10
    window = count_message_tokens(messages[1:]) + max_tokens  # the last two fit exactly, not all three
    LLMModel.objects.filter(provider__name="demo", name="demo-fast").update(context_window=window)
    routing_changed()
    client = sdk(gateway, new_key())
    inputs: Any = messages

    response = client.responses.create(
        model="demo/demo-fast", input=inputs, truncation="auto", max_output_tokens=max_tokens
    )
    assert sent_messages(fake) == messages[1:]
    assert response.truncation == "auto"
    # The whole input is still the response's (and the next turn's context, truncated again as needed).
    assert len(client.responses.input_items.list(response.id).data) == 3

    client.responses.create(model="demo/demo-fast", input=inputs, truncation="disabled", max_output_tokens=max_tokens)
    assert sent_messages(fake) == messages  # the upstream says whether it fits

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="demo/demo-fast", input=inputs, truncation="auto", max_output_tokens=window
        )  # not even the last item fits beside the answer
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "input")
