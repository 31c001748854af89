"""The OpenAI Responses API door (``/v1/responses``), driven by the official ``openai`` SDK over real HTTP.

The demo provider points at the fake upstream, which is deterministic: asking it directly (chat completions)
for the messages the door must send gives the exact text and usage the Response must carry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from django.db import connection
from django.utils import timezone
from openai import OpenAI
from openai.types.responses import ResponseFunctionToolCall

from accounts.models import ApiKey
from accounts.selectors import KeyInfo
from accounts.services import apikey_create
from ledger.models import UsageRecord
from routing import responses_store
from routing.models import LLMModel, Provider, StoredResponse
from routing.responses_api import responses_request
from routing.serializers import ResponsesInput
from routing.services import routing_changed
from routing.tasks import purge_expired_responses
from spignosapi.fastpath.validation import validated
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
WEATHER_CHAT_TOOL: Any = {
    "type": "function",
    "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"},
}


def new_key() -> str:
    return apikey_create(name="responses")[1]


def sdk(gateway: Gateway, raw_key: str) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key=raw_key, max_retries=0, timeout=30)


def upstream_text(fake: Fake, model: str, messages: Any, max_tokens: int) -> Any:
    """What the fake upstream itself answers these chat messages: the text the Response must carry."""
    direct = OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    return direct.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)


def last_sent(fake: Fake, model: str) -> dict[str, Any]:
    sent = fake.stats()["last"][model]  # type: ignore[index]
    assert isinstance(sent, dict)
    return sent


def usage_row(request_id: str) -> UsageRecord:
    wait_until(lambda: UsageRecord.objects.filter(request_id=request_id).exists(), timeout=10)
    return UsageRecord.objects.get(request_id=request_id)


# --- create ----------------------------------------------------------------------------------------------------


def test_a_string_input_is_answered_as_a_response_object_and_stored(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    raw = client.responses.with_raw_response.create(
        model="router", input="hello there", max_output_tokens=50, user="u-1", extra_headers={"X-Request-ID": "r-1"}
    )
    response = raw.parse()
    expected = upstream_text(fake, "demo-fast", [{"role": "user", "content": "hello there"}], 50)

    assert raw.headers["X-Spignos-Route"] == "conversation/demo/demo-fast/1"
    assert last_sent(fake, "demo-fast")["messages"] == [{"role": "user", "content": "hello there"}]
    assert re.fullmatch(r"resp_[0-9a-f]{32}", response.id)
    assert (response.object, response.status, response.model) == ("response", "completed", "demo/demo-fast")
    assert response.output_text == expected.choices[0].message.content
    [message] = response.output
    assert message.type == "message"
    assert re.fullmatch(r"msg_[0-9a-f]{32}", message.id)
    assert (message.role, message.status) == ("assistant", "completed")
    assert [(part.type, part.text, part.annotations) for part in message.content] == [  # type: ignore[union-attr]
        ("output_text", expected.choices[0].message.content, [])
    ]
    assert response.usage is not None and expected.usage is not None
    assert response.usage.model_dump(exclude_none=True) == {
        "input_tokens": expected.usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 16,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": expected.usage.prompt_tokens + 16,
    }
    assert (
        raw.http_response.json()["store"],
        response.user,
        response.max_output_tokens,
        response.previous_response_id,
    ) == (
        True,
        "u-1",
        50,
        None,
    )
    assert (response.tool_choice, response.tools, response.parallel_tool_calls, response.incomplete_details) == (
        "auto",
        [],
        True,
        None,
    )

    stored = StoredResponse.objects.get(id=response.id)
    assert stored.body == json.loads(raw.http_response.text)  # the body as it was sent
    assert stored.conversation == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": expected.choices[0].message.content},
    ]
    row = usage_row("r-1")
    assert (row.endpoint, row.model, row.status, row.user_id, row.completion_tokens) == (
        "responses",
        "demo/demo-fast",
        "ok",
        "u-1",
        16,
    )


def test_items_and_instructions_become_the_chat_messages(gateway: Gateway, fake: Fake) -> None:
    items: Any = [  # (the SDK's TypedDicts cannot tell these items apart: what a client sends, typed loosely)
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix this python"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Show me.", "annotations": []}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Here:"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
            ],
        },
    ]
    response = sdk(gateway, new_key()).responses.create(
        model="demo/demo-smart",
        instructions="Answer in French.",
        input=items,
        max_output_tokens=4,
        temperature=0.5,
        top_p=0.9,
    )
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Fix this python"},
        {"role": "assistant", "content": "Show me."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            ],
        },
    ]
    sent = last_sent(fake, "demo-smart")
    assert (sent["messages"], sent["max_tokens"], sent["temperature"], sent["top_p"]) == (messages, 4, 0.5, 0.9)
    # The fake writes 16 tokens; max_output_tokens cut it at 4: OpenAI's "incomplete".
    assert (response.status, response.incomplete_details and response.incomplete_details.reason) == (
        "incomplete",
        "max_output_tokens",
    )
    assert response.output_text == upstream_text(fake, "demo-smart", messages, 4).choices[0].message.content
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert response.instructions == "Answer in French."
    assert (response.temperature, response.top_p) == (0.5, 0.9)


def test_a_function_tool_round_trip_with_previous_response_id(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    first = client.responses.create(model="router", input="What is the weather in Paris?", tools=[WEATHER_TOOL])
    [call_item] = first.output
    assert isinstance(call_item, ResponseFunctionToolCall)
    assert re.fullmatch(r"fc_[0-9a-f]{32}", call_item.id or "")
    assert call_item.call_id.startswith("call_")
    assert (call_item.name, json.loads(call_item.arguments), call_item.status) == (
        "get_weather",
        {"city": "fake", "days": 1},
        "completed",
    )
    assert first.output_text == ""
    assert last_sent(fake, "demo-smart")["tools"] == [WEATHER_CHAT_TOOL]

    second = client.responses.create(
        model="router",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call_item.call_id, "output": '{"temperature": 21}'}],
        tools=[WEATHER_TOOL],
    )
    conversation = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_item.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call_item.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_item.call_id, "content": '{"temperature": 21}'},
    ]
    assert last_sent(fake, "demo-smart")["messages"] == conversation
    assert second.previous_response_id == first.id
    assert [item.type for item in second.output] == ["message"]
    expected = upstream_text(fake, "demo-smart", conversation, 256).choices[0].message.content
    assert second.output_text == expected
    stored = StoredResponse.objects.get(id=second.id)
    assert stored.conversation == [*conversation, {"role": "assistant", "content": expected}]


def test_output_items_sent_back_as_input_continue_without_storage(gateway: Gateway, fake: Fake) -> None:
    # What the Agents SDK does with store=False: the previous output items go back in the next input.
    client = sdk(gateway, new_key())
    question: Any = {"role": "user", "content": "weather in Rome?"}
    first = client.responses.create(model="router", input=[question], tools=[WEATHER_TOOL], store=False)
    [call_item] = first.output
    assert isinstance(call_item, ResponseFunctionToolCall)
    output: Any = {"type": "function_call_output", "call_id": call_item.call_id, "output": "sunny"}
    items: Any = [question, *[item.model_dump(exclude_none=True) for item in first.output], output]
    second = client.responses.create(
        model="router",
        input=items,
        tools=[WEATHER_TOOL],
        tool_choice="none",
        store=False,
    )
    sent = last_sent(fake, "demo-smart")
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_item.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call_item.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_item.call_id, "content": "sunny"},
    ]
    assert sent["tool_choice"] == "none"
    assert second.output_text
    assert StoredResponse.objects.count() == 0
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_a_named_tool_choice_is_translated(gateway: Gateway, fake: Fake) -> None:
    sdk(gateway, new_key()).responses.create(
        model="router", input="hi", tools=[WEATHER_TOOL], tool_choice={"type": "function", "name": "get_weather"}
    )
    assert last_sent(fake, "demo-smart")["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


# --- stream ----------------------------------------------------------------------------------------------------

TEXT_EVENTS_HEAD = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
TEXT_EVENTS_TAIL = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_a_stream_sends_the_typed_events_in_order_and_stores_the_response(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    with client.responses.stream(model="router", input="hello there", instructions="Be brief.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    expected = upstream_text(fake, "demo-fast", messages, 256).choices[0].message.content

    types = [event.type for event in events]
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert types == [*TEXT_EVENTS_HEAD, *["response.output_text.delta"] * len(deltas), *TEXT_EVENTS_TAIL]
    assert len(deltas) == 16  # the fake's 16 words, one piece each
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(d.delta for d in deltas) == expected
    created, in_progress = events[0], events[1]
    assert created.response.status == in_progress.response.status == "in_progress"  # type: ignore[union-attr]
    assert created.response.output == [] and created.response.usage is None  # type: ignore[union-attr]
    item_id = final.output[0].id  # type: ignore[union-attr]
    assert {getattr(event, "item_id", item_id) for event in events[3:-2]} == {item_id}
    assert final.output_text == expected
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens == 16
    assert last_sent(fake, "demo-fast")["messages"] == messages
    stored = client.responses.retrieve(final.id)  # the completed event's response is what was stored
    assert (stored.id, stored.status, stored.output_text, stored.usage) == (
        final.id,
        "completed",
        expected,
        final.usage,
    )


def test_a_streamed_function_call(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    whole = client.responses.create(model="router", input="weather in Paris?", tools=[WEATHER_TOOL])
    with client.responses.stream(model="router", input="weather in Paris?", tools=[WEATHER_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    pieces = types.count("response.function_call_arguments.delta")
    assert pieces >= 1
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * pieces,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    [expected] = whole.output
    [item] = final.output
    assert isinstance(item, ResponseFunctionToolCall) and isinstance(expected, ResponseFunctionToolCall)
    assert (item.call_id, item.name, item.arguments, item.status) == (
        expected.call_id,
        "get_weather",
        expected.arguments,
        "completed",
    )
    added = events[2]
    assert added.item.status == "in_progress" and added.item.arguments == ""  # type: ignore[union-attr]
    done = events[-3]
    assert (done.arguments, done.item_id) == (expected.arguments, item.id)  # type: ignore[union-attr]


def test_a_stream_that_breaks_off_ends_with_response_failed_and_stores_nothing(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"error_after": 2}})
    reply = call(
        "POST", gateway.url + "/v1/responses", {"model": "router", "input": "hello", "stream": True}, key=new_key()
    )
    events = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == [
        *TEXT_EVENTS_HEAD,
        "response.output_text.delta",
        "response.output_text.delta",
        "response.failed",
    ]
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "upstream_error"
    assert failed["error"]["message"].startswith("The upstream stream failed: ")
    assert StoredResponse.objects.count() == 0


# Published reference: the event stream of a text answer as OpenAI's API reference ("Streaming events") and
# its streaming guide show it, byte for byte as the API sends it: one ``event:`` and one ``data:`` line per
# event, a blank line after each. The gateway's stream must have the same framing, event order and fields.
OPENAI_REFERENCE_STREAM = (Path(__file__).parent / "fixtures" / "openai_responses_stream.sse").read_bytes()
SSE_EVENT = re.compile(rb"event: ([a-z_.]+)\ndata: ([^\n]+)\n\n")


def parsed_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each event; asserts the bytes are nothing but well-framed events."""
    events = [(name.decode(), json.loads(data)) for name, data in SSE_EVENT.findall(raw)]
    assert b"".join(m.group(0) for m in SSE_EVENT.finditer(raw)) == raw
    return events


def shape(value: Any) -> Any:
    """The keys of ``value`` all the way down (lists by their first item): what a client's parser relies on."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def test_the_stream_bytes_match_openais_published_reference(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"tokens": 1}})
    reply = call(
        "POST",
        gateway.url + "/v1/responses",
        {"model": "router", "input": "hello", "instructions": "You are a helpful assistant.", "stream": True},
        key=new_key(),
    )
    assert (reply.status, reply.headers["content-type"]) == (200, "text/event-stream")
    ours = parsed_events(reply.text.encode())
    reference = parsed_events(OPENAI_REFERENCE_STREAM)
    assert [name for name, _ in ours] == [name for name, _ in reference]
    for (name, data), (_, published) in zip(ours, reference, strict=True):
        assert data["type"] == name
        # Every field the reference has, ours has, with a value of the same kind (ours may add the newer ones:
        # logprobs, completed_at, service_tier, …), the sequence number last as OpenAI writes it.
        assert _covers(shape(data), shape(published)), (name, data)
        assert list(data)[-1] == "sequence_number" and list(data)[0] == "type"
    assert [data["sequence_number"] for _, data in ours] == list(range(len(ours)))


def _covers(ours: Any, published: Any) -> bool:
    if isinstance(published, dict):
        return isinstance(ours, dict) and all(k in ours and _covers(ours[k], v) for k, v in published.items())
    if isinstance(published, list):
        return isinstance(ours, list) and (not published or (bool(ours) and _covers(ours[0], published[0])))
    return bool(ours == published or published is None)  # a null in the reference: any value of ours


# --- GET and DELETE --------------------------------------------------------------------------------------------


def test_get_returns_the_stored_response_and_delete_removes_it(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway, new_key())
    created = client.responses.create(model="router", input="hello there", metadata={"ticket": "42"})
    assert created.metadata == {"ticket": "42"}
    assert client.responses.retrieve(created.id) == created

    reply = call("DELETE", f"{gateway.url}/v1/responses/{created.id}", key=client.api_key)
    assert (reply.status, reply.json()) == (200, {"id": created.id, "object": "response", "deleted": True})
    assert StoredResponse.objects.count() == 0
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(created.id)
    assert caught.value.body == {
        "message": f"Response with id {created.id!r} not found.",
        "type": "not_found_error",
        "code": "response_not_found",
        "param": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_another_keys_response_is_not_found_and_nothing_is_stored(gateway: Gateway, fake: Fake) -> None:
    owner, other = sdk(gateway, new_key()), sdk(gateway, new_key())
    created = owner.responses.create(model="router", input="hello there")
    requests_before = fake.stats()["requests"]

    for attempt in (
        lambda: other.responses.retrieve(created.id),
        lambda: other.responses.delete(created.id),
        lambda: other.responses.create(model="router", input="go on", previous_response_id=created.id),
        lambda: other.responses.create(model="router", input="go on", previous_response_id="resp_unknown", stream=True),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    with pytest.raises(openai.NotFoundError) as caught:
        other.responses.create(model="router", input="go on", previous_response_id=created.id)
    assert (caught.value.code, caught.value.param, caught.value.message) == (
        "previous_response_not_found",
        "previous_response_id",
        f"Error code: 404 - Previous response with id {created.id!r} not found.",
    )
    assert list(StoredResponse.objects.values_list("id", flat=True)) == [created.id]
    assert fake.stats()["requests"] == requests_before  # no model was called
    assert owner.responses.retrieve(created.id).id == created.id


def test_an_expired_response_is_gone_and_purged(gateway: Gateway, fake: Fake, settings: Any) -> None:
    client = sdk(gateway, new_key())
    created = client.responses.create(model="router", input="hello there")
    kept = client.responses.create(model="router", input="hello again")
    StoredResponse.objects.filter(id=created.id).update(created_at=timezone.now() - timedelta(days=31))
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="router", input="more", previous_response_id=created.id)
    assert purge_expired_responses() == 1
    assert list(StoredResponse.objects.values_list("id", flat=True)) == [kept.id]
    settings.RESPONSES_RETENTION_DAYS = 31  # the setting decides: read in-process here
    StoredResponse.objects.filter(id=kept.id).update(created_at=timezone.now() - timedelta(days=30, hours=23))
    key = ApiKey.objects.get(name="responses")
    assert responses_store.load(kept.id, key.id) is not None


# --- bad input -------------------------------------------------------------------------------------------------

BAD_BODIES = [
    ({"model": "router", "input": 5}, "input", "invalid_type"),
    ({"model": "router", "input": {"role": "user"}}, "input", "invalid_type"),
    ({"model": "router"}, "input", "required"),
    ({"input": "hi"}, "model", "required"),
    ({"model": "router", "input": []}, "input", "empty"),
    ({"model": "router", "input": ["hi"]}, "input[0]", "invalid_type"),
    ({"model": "router", "input": [{"type": "reasoning", "summary": []}]}, "input[0].type", "invalid_value"),
    ({"model": "router", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "invalid_value"),
    ({"model": "router", "input": [{"role": "robot", "content": "hi"}]}, "input[0].role", "invalid_value"),
    ({"model": "router", "input": [{"role": "user", "content": 3}]}, "input[0].content", "invalid_type"),
    (
        {"model": "router", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input[0].content[0].type",
        "invalid_value",
    ),
    ({"model": "router", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id", "invalid_type"),
    (
        {"model": "router", "input": [{"type": "function_call_output", "call_id": "c"}]},
        "input[0].output",
        "invalid_type",
    ),
    ({"model": "router", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type", "invalid_value"),
    ({"model": "router", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name", "invalid_type"),
    ({"model": "router", "input": "hi", "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"model": "router", "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type", "invalid_value"),
    (
        {"model": "router", "input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}},
        "text.format.name",
        "missing_required",
    ),
    ({"model": "router", "input": "hi", "temperature": 3}, "temperature", "max_value"),
    ({"model": "router", "input": "hi", "max_output_tokens": 0}, "max_output_tokens", "min_value"),
    ({"model": "router", "input": "hi", "store": "maybe"}, "store", "invalid"),
    ({"model": "router", "input": "hi", "metadata": {"k": {"nested": 1}}}, "metadata.k", "invalid"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES, ids=[f"{p}-{c}" for _, p, c in BAD_BODIES])
def test_bad_input_is_a_400_naming_the_param_and_nothing_is_stored_or_called(
    gateway: Gateway, fake: Fake, body: dict[str, Any], param: str, code: str
) -> None:
    reply = call("POST", gateway.url + "/v1/responses", body, key=new_key())
    assert reply.status == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]
    assert StoredResponse.objects.count() == 0
    assert fake.stats()["requests"] == {}


UNKNOWN_ITEM: Any = {"type": "computer_call_output", "call_id": "c", "output": {}}


def test_the_sdk_raises_bad_request_for_an_unknown_item_type(gateway: Gateway, fake: Fake) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, new_key()).responses.create(
            model="router",
            input=[UNKNOWN_ITEM],
        )
    assert caught.value.body == {
        "message": "input[0].type 'computer_call_output' is not supported: message, function_call or "
        "function_call_output.",
        "type": "invalid_request_error",
        "code": "invalid_value",
        "param": "input[0].type",
    }


def test_an_unknown_model_is_a_404_in_the_openai_envelope(gateway: Gateway, fake: Fake) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway, new_key()).responses.create(model="nope/nothing", input="hi")
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    assert StoredResponse.objects.count() == 0


def test_a_wrong_key_is_a_401(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "sk-wrong").responses.create(model="router", input="hi")
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "sk-wrong").responses.retrieve("resp_x")


# --- translation (no server) -----------------------------------------------------------------------------------


KEY = KeyInfo(1, "k", False, None, None, None, None, None, "h")


def translated(body: dict[str, Any]) -> Any:
    return responses_request(validated(ResponsesInput, body), key=KEY, request_id="r", previous=[])


def test_text_format_becomes_the_response_format_param() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    call_ = translated({"model": "router", "input": "hi", "text": {"format": fmt}}).call
    assert call_.params == {
        "response_format": {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    }
    call_ = translated({"model": "router", "input": "json please", "text": {"format": {"type": "json_object"}}}).call
    assert call_.params == {"response_format": {"type": "json_object"}}
    call_ = translated({"model": "router", "input": "hi", "text": {"format": {"type": "text"}}}).call
    assert call_.params == {}


def test_the_other_fields_reach_the_call() -> None:
    request = translated(
        {
            "model": "code",
            "input": "hi",
            "max_output_tokens": 99,
            "user": "u",
            "parallel_tool_calls": False,
            "reasoning": {"effort": "low"},
            "tools": [{**WEATHER_TOOL, "strict": True}],
        }
    )
    c = request.call
    assert (c.model, c.max_tokens, c.user_id, c.endpoint, c.temperature, c.top_p) == (
        "code",
        99,
        "u",
        "responses",
        1.0,
        1.0,
    )
    assert c.params == {"parallel_tool_calls": False, "reasoning_effort": "low"}
    assert c.tools == [{"type": "function", "function": {**WEATHER_CHAT_TOOL["function"], "strict": True}}]
    assert translated({"model": "router", "input": "hi"}).call.model is None  # routed


# --- an Anthropic-kind backend ---------------------------------------------------------------------------------


@pytest.fixture
def anthropic_model(gateway: Gateway, fake: Fake) -> str:
    """An Anthropic-kind provider on the fake upstream's Messages API: the door translates, the provider too."""
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=fake.url + "/v1")
    LLMModel.objects.create(provider=provider, name="claude-fake", price_in_per_m=1, price_out_per_m=1)
    routing_changed()
    return "claude/claude-fake"


ANTHROPIC_TOOL = {
    "name": "get_weather",
    "input_schema": WEATHER_TOOL["parameters"],
    "description": "The weather in a city.",
}


def test_an_anthropic_backend_serves_a_tool_round_trip_and_a_stream(
    anthropic_model: str, gateway: Gateway, fake: Fake
) -> None:
    client = sdk(gateway, new_key())
    first = client.responses.create(
        model=anthropic_model, instructions="Be brief.", input="weather in Paris?", tools=[WEATHER_TOOL]
    )
    question = {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]}
    sent = last_sent(fake, "claude-fake")
    assert (sent["system"], sent["messages"], sent["tools"]) == ("Be brief.", [question], [ANTHROPIC_TOOL])
    [call_item] = first.output
    assert isinstance(call_item, ResponseFunctionToolCall)
    assert (first.model, call_item.name, json.loads(call_item.arguments)) == (
        anthropic_model,
        "get_weather",
        {"city": "fake", "days": 1},
    )
    assert call_item.call_id.startswith("toolu_")  # the provider's own id, kept through the round trip

    second = client.responses.create(
        model=anthropic_model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call_item.call_id, "output": "21"}],
        tools=[WEATHER_TOOL],
    )
    sent = last_sent(fake, "claude-fake")
    assert "system" not in sent  # instructions are not carried over to the next response (as OpenAI does)
    assert sent["messages"] == [
        question,
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": call_item.call_id,
                    "name": "get_weather",
                    "input": {"city": "fake", "days": 1},
                }
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_item.call_id, "content": "21"}]},
    ]
    assert len(second.output_text.split()) == 16 and second.status == "completed"

    with client.responses.stream(model=anthropic_model, input="hello") as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types == [*TEXT_EVENTS_HEAD, *["response.output_text.delta"] * 16, *TEXT_EVENTS_TAIL]
    assert len(final.output_text.split()) == 16 and final.usage is not None and final.usage.output_tokens == 16


@pytest.fixture
def inserts_refused(gateway: Gateway) -> Iterator[None]:
    """The stored responses' table refuses every INSERT (a trigger), as a database that fails under a write."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_insert() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ "
            "LANGUAGE plpgsql; CREATE TRIGGER refuse BEFORE INSERT ON routing_storedresponse "
            "FOR EACH ROW EXECUTE FUNCTION refuse_insert();"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse ON routing_storedresponse; DROP FUNCTION refuse_insert();")


def test_a_stream_whose_response_cannot_be_stored_ends_with_response_failed(
    gateway: Gateway, fake: Fake, inserts_refused: None
) -> None:
    reply = call(
        "POST", gateway.url + "/v1/responses", {"model": "router", "input": "hi", "stream": True}, key=new_key()
    )
    events = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events[-4:]] == [*TEXT_EVENTS_TAIL[:-1], "response.failed"]
    failed = events[-1]["response"]
    assert (failed["status"], failed["error"]) == (
        "failed",
        {"code": "database_unavailable", "message": "The response could not be stored."},
    )
    assert failed["usage"]["output_tokens"] == 16  # the answer was computed (and booked): only keeping it failed
    assert StoredResponse.objects.count() == 0
