"""Nothing dropped silently: every chat-completions field reaches the model, everything it returns comes back.

The official ``openai`` SDK drives the gateway over real HTTP; the demo provider and an Anthropic-kind
provider both point at the fake upstream, which honours ``response_format``, ``n``, ``logprobs`` and ``seed``
and is deterministic: asking it directly gives the exact answer the gateway must relay.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from accounts.services import apikey_create
from ledger.models import UsageRecord
from routing.models import LLMModel, Provider
from routing.services import model_mapping_set, routing_changed
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
JSON_PLEASE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there, answer in json"}]


class Weather(BaseModel):
    city: str
    degrees: int
    sunny: bool


def sdk(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key=apikey_create(name="params")[1], max_retries=0, timeout=30)


def direct(fake: Fake) -> OpenAI:
    """The fake upstream itself: what the gateway must relay unchanged."""
    return OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def sent_upstream(fake: Fake, model: str) -> dict[str, Any]:
    last = fake.stats()["last"]
    assert isinstance(last, dict)
    body = last[model]
    assert isinstance(body, dict)
    return body


def anthropic_provider(fake: Fake, *, drop_params: bool = False) -> str:
    """An Anthropic-kind provider on the fake upstream's /v1/messages; its model's id."""
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=fake.url, drop_params=drop_params)
    LLMModel.objects.create(provider=provider, name="claude-fake")
    routing_changed()
    return "claude/claude-fake"


def chunks_of(stream: Any) -> list[Any]:
    return [chunk for chunk in stream]


# --- OpenAI-compatible provider: fields passed on unchanged -----------------------------------------------


def test_parse_with_a_pydantic_model_returns_the_parsed_object(gateway: Gateway, fake: Fake) -> None:
    completion = sdk(gateway).chat.completions.parse(model="router", messages=HELLO, response_format=Weather)
    expected = direct(fake).chat.completions.parse(model="demo-fast", messages=HELLO, response_format=Weather)

    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Weather)
    assert parsed == expected.choices[0].message.parsed
    assert completion.choices[0].message.content == expected.choices[0].message.content
    response_format = sent_upstream(fake, "demo-fast")["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Weather"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["required"] == ["city", "degrees", "sunny"]


def test_json_object_mode_answers_json(gateway: Gateway, fake: Fake) -> None:
    completion = sdk(gateway).chat.completions.create(
        model="demo/demo-fast", messages=JSON_PLEASE, response_format={"type": "json_object"}, max_tokens=50
    )
    answer = json.loads(completion.choices[0].message.content or "")
    assert list(answer) == ["answer"]
    assert sent_upstream(fake, "demo-fast")["response_format"] == {"type": "json_object"}


def test_logprobs_come_back_exactly_in_json(gateway: Gateway, fake: Fake) -> None:
    completion = sdk(gateway).chat.completions.create(
        model="router", messages=HELLO, max_tokens=4, logprobs=True, top_logprobs=2
    )
    expected = direct(fake).chat.completions.create(
        model="demo-fast", messages=HELLO, max_tokens=4, logprobs=True, top_logprobs=2
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert logprobs.model_dump() == expected.choices[0].logprobs.model_dump()  # type: ignore[union-attr]
    assert "".join(entry.token for entry in logprobs.content) == completion.choices[0].message.content
    assert [len(entry.top_logprobs) for entry in logprobs.content] == [2, 2, 2, 2]
    assert completion.system_fingerprint == "fp_fake"
    sent = sent_upstream(fake, "demo-fast")
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)


def test_logprobs_come_back_in_every_stream_chunk(gateway: Gateway, fake: Fake) -> None:
    chunks = chunks_of(
        sdk(gateway).chat.completions.create(
            model="router", messages=HELLO, max_tokens=4, logprobs=True, top_logprobs=2, stream=True
        )
    )
    expected = direct(fake).chat.completions.create(
        model="demo-fast", messages=HELLO, max_tokens=4, logprobs=True, top_logprobs=2
    )
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 4
    assert all(len(c.choices[0].logprobs.content) == 1 for c in content)
    streamed = [c.choices[0].logprobs.content[0].model_dump() for c in content]
    assert streamed == [e.model_dump() for e in expected.choices[0].logprobs.content]  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices[0].logprobs is None
    assert {c.system_fingerprint for c in chunks} == {"fp_fake"}


def test_n_two_gives_two_choices(gateway: Gateway, fake: Fake) -> None:
    completion = sdk(gateway).chat.completions.create(model="router", messages=HELLO, n=2, max_tokens=5)
    expected = direct(fake).chat.completions.create(model="demo-fast", messages=HELLO, n=2, max_tokens=5)

    assert [c.index for c in completion.choices] == [0, 1]
    assert [c.message.content for c in completion.choices] == [c.message.content for c in expected.choices]
    assert completion.choices[0].message.content != completion.choices[1].message.content
    assert [c.finish_reason for c in completion.choices] == ["length", "length"]
    assert completion.usage is not None and expected.usage is not None
    assert completion.usage.completion_tokens == expected.usage.completion_tokens == 10
    assert sent_upstream(fake, "demo-fast")["n"] == 2


def test_n_two_streams_both_choices(gateway: Gateway, fake: Fake) -> None:
    chunks = chunks_of(
        sdk(gateway).chat.completions.create(
            model="router",
            messages=HELLO,
            n=2,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    expected = direct(fake).chat.completions.create(model="demo-fast", messages=HELLO, n=2, max_tokens=5)
    texts: dict[int, str] = {0: "", 1: ""}
    roles: dict[int, list[str]] = {0: [], 1: []}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.delta.role:
                roles[choice.index].append(choice.delta.role)
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == {c.index: c.message.content for c in expected.choices}
    assert roles == {0: ["assistant"], 1: ["assistant"]}
    assert finishes == {0: "length", 1: "length"}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10


def test_seed_reaches_the_upstream_and_fixes_the_answer(gateway: Gateway, fake: Fake) -> None:
    client = sdk(gateway)
    first = client.chat.completions.create(model="router", messages=HELLO, seed=42, max_tokens=6)
    again = client.chat.completions.create(model="router", messages=HELLO, seed=42, max_tokens=6)
    other = client.chat.completions.create(model="router", messages=HELLO, seed=7, max_tokens=6)
    expected = direct(fake).chat.completions.create(model="demo-fast", messages=HELLO, seed=7, max_tokens=6)

    assert sent_upstream(fake, "demo-fast")["seed"] == 7
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert other.choices[0].message.content == expected.choices[0].message.content
    assert other.system_fingerprint == "fp_fake"


def test_every_other_field_reaches_the_upstream_unchanged(gateway: Gateway, fake: Fake) -> None:
    sdk(gateway).chat.completions.create(
        model="router",
        messages=HELLO,
        max_tokens=3,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        logit_bias={"1234": -100},
        metadata={"run": "r1"},
        parallel_tool_calls=False,
        extra_body={"vendor_knob": {"deep": [1, 2]}, "ignored_null": None},
    )
    sent = sent_upstream(fake, "demo-fast")
    assert {k: sent[k] for k in ("presence_penalty", "frequency_penalty", "logit_bias", "metadata")} == {
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "logit_bias": {"1234": -100},
        "metadata": {"run": "r1"},
    }
    assert sent["parallel_tool_calls"] is False
    assert sent["vendor_knob"] == {"deep": [1, 2]}
    assert "ignored_null" not in sent


def test_a_bad_json_schema_is_a_400_naming_response_format(gateway: Gateway, fake: Fake) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(
            model="router",
            messages=HELLO,
            response_format={"type": "json_schema", "json_schema": {"name": "has spaces", "schema": {}}},
        )
    assert caught.value.status_code == 400
    assert (caught.value.type, caught.value.param) == ("invalid_request_error", "response_format")
    assert fake.stats()["requests"] == {}


# --- Anthropic-kind provider: translated, or refused naming the param --------------------------------------


def test_an_anthropic_provider_answers_a_json_schema_with_valid_json(gateway: Gateway, fake: Fake) -> None:
    model = anthropic_provider(fake)
    completion = sdk(gateway).chat.completions.parse(model=model, messages=HELLO, response_format=Weather)

    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Weather)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None
    sent = sent_upstream(fake, "claude-fake")
    assert sent["tool_choice"] == {"type": "tool", "name": "Weather"}
    assert [tool["name"] for tool in sent["tools"]] == ["Weather"]
    assert sent["tools"][0]["input_schema"]["required"] == ["city", "degrees", "sunny"]


def test_an_anthropic_provider_streams_a_json_schema_answer_as_text(gateway: Gateway, fake: Fake) -> None:
    model = anthropic_provider(fake)
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "Weather", "schema": Weather.model_json_schema()},
    }
    chunks = chunks_of(
        sdk(gateway).chat.completions.create(model=model, messages=HELLO, response_format=response_format, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert Weather.model_validate_json(text)
    assert all(not c.choices or c.choices[0].delta.tool_calls is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    # OpenAI's opening chunk, on this backend too: the role and empty content, then the text without the role.
    assert chunks[0].choices[0].delta.model_dump(exclude_unset=True) == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    assert chunks[0].choices[0].delta.model_extra == {} and chunks[0].choices[0].finish_reason is None
    assert [c.choices[0].delta.role for c in chunks[1:]] == [None] * (len(chunks) - 1)


def test_an_anthropic_provider_answers_json_object_mode_with_json(gateway: Gateway, fake: Fake) -> None:
    model = anthropic_provider(fake)
    completion = sdk(gateway).chat.completions.create(
        model=model, messages=HELLO, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)
    assert sent_upstream(fake, "claude-fake")["tool_choice"] == {"type": "tool", "name": "json_answer"}


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_to_an_anthropic_provider_is_a_400_unsupported_parameter(
    gateway: Gateway, fake: Fake, stream: bool
) -> None:
    model = anthropic_provider(fake)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(
            model=model,
            messages=HELLO,
            logprobs=True,
            stream=stream,
            extra_headers={"X-Request-ID": f"req-unsupported-{stream}"},
        )
    error = caught.value
    assert error.status_code == 400
    assert (error.type, error.code, error.param) == ("invalid_request_error", "unsupported_parameter", "logprobs")
    assert error.body["message"] == (  # type: ignore[index]
        "Unsupported parameter: 'logprobs' is not supported by anthropic provider 'claude' (model 'claude-fake'). "
        "Remove it, or set drop_params on the provider to have it dropped."
    )
    assert fake.stats()["requests"] == {}
    wait_until(lambda: UsageRecord.objects.filter(request_id=f"req-unsupported-{stream}").exists(), timeout=10)
    row = UsageRecord.objects.get(request_id=f"req-unsupported-{stream}")
    assert (row.status, row.error_code, row.completion_tokens) == ("error", "unsupported_parameter", 0)


def test_values_that_ask_for_nothing_are_not_refused(gateway: Gateway, fake: Fake) -> None:
    model = anthropic_provider(fake)
    completion = sdk(gateway).chat.completions.create(
        model=model, messages=HELLO, n=1, logprobs=False, presence_penalty=0, max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    sent = sent_upstream(fake, "claude-fake")
    assert not {"n", "logprobs", "presence_penalty"} & set(sent)


@pytest.mark.parametrize("stream", [False, True])
def test_drop_params_serves_what_the_provider_cannot_honour(gateway: Gateway, fake: Fake, stream: bool) -> None:
    model = anthropic_provider(fake, drop_params=True)
    response = sdk(gateway).chat.completions.create(
        model=model, messages=HELLO, logprobs=True, top_logprobs=2, seed=3, max_tokens=3, stream=stream
    )
    if stream:
        chunks = chunks_of(response)
        assert chunks[-1].choices[0].finish_reason == "length"
    else:
        assert response.choices[0].finish_reason == "length"  # type: ignore[union-attr]
        assert response.choices[0].logprobs is None  # type: ignore[union-attr]
    sent = sent_upstream(fake, "claude-fake")
    assert not {"logprobs", "top_logprobs", "seed"} & set(sent)
    assert sent["max_tokens"] == 3


def test_a_routed_request_falls_back_to_a_model_that_honours_the_param(gateway: Gateway, fake: Fake) -> None:
    model = anthropic_provider(fake)
    model_mapping_set(category="conversation", models=[model, "demo/demo-fast"])
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="conversation", messages=HELLO, seed=5, max_tokens=3
    )
    assert raw.headers["X-Spignos-Route"] == "conversation/demo/demo-fast/2"
    assert raw.parse().model == "demo/demo-fast"
    assert fake.stats()["requests"] == {"demo-fast": 1}


# --- langchain-openai -----------------------------------------------------------------------------------


def test_langchain_with_structured_output_gets_the_parsed_object(gateway: Gateway, fake: Fake) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    key = SecretStr(apikey_create(name="lc")[1])
    llm = ChatOpenAI(model="router", base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    answer = llm.with_structured_output(Weather).invoke("hello there")
    expected = direct(fake).chat.completions.parse(model="demo-fast", messages=HELLO, response_format=Weather)
    assert answer == expected.choices[0].message.parsed
    assert sent_upstream(fake, "demo-fast")["response_format"]["json_schema"]["name"] == "Weather"
