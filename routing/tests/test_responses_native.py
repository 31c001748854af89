"""``/v1/responses`` passed through to an OpenAI-kind model as it came: the fake upstream serves the Responses
API itself, so what the gateway relays is compared with what the upstream answers the same body directly."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openai import OpenAI
from openai.types.responses import ResponseFunctionToolCall

from accounts.services import apikey_create
from ledger.models import UsageRecord
from routing.models import LLMModel, Provider, StoredResponse
from routing.services import model_mapping_set, routing_changed
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}


@pytest.fixture
def gpt(gateway: Gateway, fake: Fake) -> str:
    """An OpenAI-kind provider on the fake upstream: it serves /v1/responses, so requests go as they came."""
    provider = Provider.objects.create(name="oai", kind="openai", base_url=fake.url + "/v1")
    LLMModel.objects.create(provider=provider, name="gpt-fake", price_in_per_m=1, price_out_per_m=1)
    routing_changed()
    return "oai/gpt-fake"


def new_key() -> str:
    return apikey_create(name="native")[1]


def sdk(gateway: Gateway, raw_key: str) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key=raw_key, max_retries=0, timeout=30)


def direct(fake: Fake) -> OpenAI:
    return OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def last_sent(fake: Fake, model: str) -> dict[str, Any]:
    sent = fake.stats()["last"][model]  # type: ignore[index]
    assert isinstance(sent, dict)
    return sent


def usage_row(request_id: str) -> UsageRecord:
    wait_until(lambda: UsageRecord.objects.filter(request_id=request_id).exists(), timeout=10)
    return UsageRecord.objects.get(request_id=request_id)


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.split("\n\n"):
        if chunk.strip():
            name, data = chunk.split("\n")
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


FAKE_IDS = re.compile(r"\b(msg|fc)_fake\d+\b")


def without_upstream_ids(value: Any) -> Any:
    """``value`` with the fake's item ids (numbered per request) made equal, as they differ between two calls."""
    return json.loads(FAKE_IDS.sub(r"\1_fake", json.dumps(value)))


def test_a_response_goes_upstream_as_it_came_and_comes_back_whole(gateway: Gateway, fake: Fake, gpt: str) -> None:
    body: dict[str, Any] = {
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello there"}]}],
        "max_output_tokens": 5,
        "metadata": {"team": "a"},
        "prompt_cache_key": "k1",  # a field the door does not know: it goes as it is
    }
    raw = sdk(gateway, new_key()).responses.with_raw_response.create(
        model=gpt, **body, extra_headers={"X-Request-ID": "req-native"}
    )
    ours = raw.parse()
    sent = last_sent(fake, "gpt-fake")
    assert sent == {**body, "model": "gpt-fake", "store": False}  # stored by the gateway, not upstream
    expected = direct(fake).responses.create(model="gpt-fake", **body)

    assert raw.headers["X-Spignos-Route"] == f"-/{gpt}/1"
    assert ours.id.startswith("resp_") and ours.id != expected.id
    assert (ours.model, ours.store, ours.status) == (gpt, True, "incomplete")
    mine = ours.to_dict()
    theirs = expected.to_dict()
    assert without_upstream_ids(mine) == without_upstream_ids(
        {**theirs, "id": ours.id, "model": gpt, "store": True, "created_at": ours.created_at}
    )
    assert ours.output_text == expected.output_text and len(ours.output_text.split()) == 5

    assert expected.usage is not None
    row = usage_row("req-native")
    assert (row.endpoint, row.model, row.status, row.prompt_tokens, row.completion_tokens) == (
        "responses",
        gpt,
        "ok",
        expected.usage.input_tokens,
        5,
    )
    stored = call("GET", f"{gateway.url}/v1/responses/{ours.id}", key=raw.http_request.headers["Authorization"][7:])
    assert stored.json() == mine


def test_a_stream_relays_the_upstreams_events_as_they_came(gateway: Gateway, fake: Fake, gpt: str) -> None:
    body = {"input": "hello there", "max_output_tokens": 4, "stream": True}
    key = new_key()
    reply = call("POST", gateway.url + "/v1/responses", {**body, "model": gpt}, key=key)
    theirs = call("POST", fake.url + "/v1/responses", {**body, "model": "gpt-fake"})
    ours, expected = sse_events(reply.text), sse_events(theirs.text)

    assert (reply.status, reply.headers["content-type"]) == (200, "text/event-stream")
    assert [name for name, _ in ours] == [name for name, _ in expected]
    assert [name for name, _ in ours] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    response_id = ours[0][1]["response"]["id"]
    for (name, mine), (_, their) in zip(ours, expected, strict=True):
        if "response" in their:  # the gateway's id, the answering model's name, the client's own fields
            own = {"id": response_id, "model": gpt, "store": True, "max_output_tokens": 4}
            their = {**their, "response": {**their["response"], **own, "created_at": mine["response"]["created_at"]}}
        assert without_upstream_ids(mine) == without_upstream_ids(their), name
    assert [data["sequence_number"] for _, data in ours] == list(range(len(ours)))

    stored = call("GET", f"{gateway.url}/v1/responses/{response_id}", key=key).json()
    assert stored == ours[-1][1]["response"]


def test_previous_response_id_works_across_native_and_translated_answers(
    gateway: Gateway, fake: Fake, gpt: str
) -> None:
    client = sdk(gateway, new_key())
    first = client.responses.create(model=gpt, input="weather in Paris?", tools=[WEATHER_TOOL])
    [call_item] = first.output
    assert isinstance(call_item, ResponseFunctionToolCall)
    assert (call_item.name, json.loads(call_item.arguments)) == ("get_weather", {"city": "fake", "days": 1})

    # A translated model continues the native answer: its function call is in the chat messages.
    result: Any = {"type": "function_call_output", "call_id": call_item.call_id, "output": "21"}
    second = client.responses.create(
        model="demo/demo-fast",
        previous_response_id=first.id,
        input=[result],
        tools=[WEATHER_TOOL],
    )
    tool_call = {
        "id": call_item.call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": call_item.arguments},
    }
    assert last_sent(fake, "demo-fast")["messages"] == [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": call_item.call_id, "content": "21"},
    ]
    assert second.status == "completed" and second.output_text

    # And the native model continues the translated one: the whole conversation goes as input items.
    third = client.responses.create(model=gpt, previous_response_id=second.id, input="thanks")
    sent = last_sent(fake, "gpt-fake")
    assert "previous_response_id" not in sent
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": "weather in Paris?"},
        {
            "type": "function_call",
            "call_id": call_item.call_id,
            "name": "get_weather",
            "arguments": call_item.arguments,
        },
        {"type": "function_call_output", "call_id": call_item.call_id, "output": "21"},
        {"type": "message", "role": "assistant", "content": second.output_text},
        {"role": "user", "content": "thanks"},
    ]
    assert third.previous_response_id == second.id and third.model == gpt


def test_a_chain_falls_back_from_a_native_model_by_translation(gateway: Gateway, fake: Fake, gpt: str) -> None:
    fake.configure(**{"gpt-fake": {"status": 503}})
    model_mapping_set(category="conversation", models=[gpt, "demo/demo-fast"])
    raw = sdk(gateway, new_key()).responses.with_raw_response.create(model="conversation", input="hello there")
    response = raw.parse()
    assert raw.headers["X-Spignos-Route"] == "conversation/demo/demo-fast/2"
    assert fake.stats()["requests"] == {"gpt-fake": 1, "demo-fast": 1}
    assert last_sent(fake, "demo-fast")["messages"] == [{"role": "user", "content": "hello there"}]
    assert (response.model, response.status, len(response.output_text.split())) == ("demo/demo-fast", "completed", 16)


def test_an_azure_model_is_sent_the_body_on_azures_path(gateway: Gateway, fake: Fake) -> None:
    provider = Provider.objects.create(name="az", kind="azure", base_url=fake.url, api_version="2025-04-01-preview")
    LLMModel.objects.create(provider=provider, name="gpt-az")
    routing_changed()
    client = sdk(gateway, new_key())
    response = client.responses.create(model="az/gpt-az", input="hello there", max_output_tokens=3)
    assert last_sent(fake, "gpt-az") == {
        "input": "hello there",
        "max_output_tokens": 3,
        "model": "gpt-az",
        "store": False,
    }
    assert (response.model, response.status, len(response.output_text.split())) == ("az/gpt-az", "incomplete", 3)
    with client.responses.stream(model="az/gpt-az", input="hello there") as stream:
        final = stream.get_final_response()
    assert (final.model, final.status, len(final.output_text.split())) == ("az/gpt-az", "completed", 16)


def test_a_native_stream_that_breaks_off_ends_with_response_failed(gateway: Gateway, fake: Fake, gpt: str) -> None:
    fake.configure(**{"gpt-fake": {"error_after": 6}})  # six events, then an error event
    reply = call(
        "POST", gateway.url + "/v1/responses", {"model": gpt, "input": "hello there", "stream": True}, key=new_key()
    )
    events = sse_events(reply.text)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.failed",
    ]
    failed = events[-1][1]
    assert failed["sequence_number"] == 6
    response = failed["response"]
    assert (response["id"], response["model"], response["status"]) == (events[0][1]["response"]["id"], gpt, "failed")
    assert response["error"] == {
        "code": "upstream_error",
        "message": "The upstream stream failed: fake upstream: simulated error mid-stream",
    }
    assert StoredResponse.objects.count() == 0
