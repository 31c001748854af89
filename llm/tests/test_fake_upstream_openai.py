"""The fake upstream honours what an OpenAI client asks: structured outputs, n, logprobs, seed, tool results.

Driven by the official ``openai`` SDK over real HTTP on loopback, as a client of the real API would.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema
import openai
import pytest
from openai import OpenAI
from openai.lib._pydantic import to_strict_json_schema
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam
from pydantic import BaseModel

from llm.fake_upstream import VOCABULARY
from llm.tokens import count_tokens

MODEL = "gpt-4o"  # a known encoding: the fake counts its tokens exactly
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Solve 8x + 7 = -23, step by step."}]
ASK_JSON: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Answer in JSON: what is the sea?"}]


NOTE_SCHEMA: Any = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["title", "tags"],
    "additionalProperties": False,
}


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Step(BaseModel):
    explanation: str
    output: float
    index: int


class Node(BaseModel):
    name: str
    children: list[Node]


class Solution(BaseModel):
    steps: list[Step]
    final_answer: str
    colour: Colour
    confidence: Literal["low", "high"]
    checked: bool
    due: datetime.date
    note: str | None
    tree: Node


@pytest.fixture
def client(fake_reset: str) -> Iterator[OpenAI]:
    sdk = OpenAI(base_url=fake_reset + "/v1", api_key="test-key", max_retries=0, timeout=10)
    yield sdk
    sdk.close()


def content_of(completion: Any, index: int = 0) -> str:
    text = completion.choices[index].message.content
    assert isinstance(text, str)
    return text


# --- response_format ---------------------------------------------------------------------------------------


def test_parse_gets_an_answer_valid_against_a_strict_nested_schema(client: OpenAI) -> None:
    completion = client.chat.completions.parse(model=MODEL, messages=ASK, response_format=Solution)
    again = client.chat.completions.parse(model=MODEL, messages=ASK, response_format=Solution)

    text = content_of(completion)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Solution)
    jsonschema.validate(json.loads(text), to_strict_json_schema(Solution))
    assert parsed == Solution.model_validate_json(text)
    assert parsed.steps and all(word in VOCABULARY for word in parsed.final_answer.split(" "))
    assert parsed.due == datetime.date(2026, 1, 1)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == count_tokens(text, MODEL)
    assert content_of(again) == text  # deterministic: the same prompt gives the same answer


def test_other_prompts_and_seeds_give_other_valid_answers(client: OpenAI) -> None:
    schema = to_strict_json_schema(Solution)
    other: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Another question."}]
    answers = [
        content_of(client.chat.completions.parse(model=MODEL, messages=messages, response_format=Solution, seed=seed))
        for messages, seed in [(ASK, None), (other, None), (ASK, 1), (ASK, 2)]
    ]

    assert len(set(answers)) == 4
    for answer in answers:
        jsonschema.validate(json.loads(answer), schema)


def test_the_stream_of_a_structured_answer_parses_to_the_same_value(client: OpenAI) -> None:
    whole = client.chat.completions.parse(model=MODEL, messages=ASK, response_format=Solution)
    with client.chat.completions.stream(model=MODEL, messages=ASK, response_format=Solution) as stream:
        chunks = [event for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()

    assert len(chunks) > 10  # a piece per token, not one blob
    assert final.choices[0].message.parsed == whole.choices[0].message.parsed
    assert "".join(chunk.delta for chunk in chunks) == content_of(whole)


def test_a_schema_answer_cut_by_max_tokens_ends_with_length(client: OpenAI) -> None:
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(model=MODEL, messages=ASK, response_format=Solution, max_tokens=5)
    cut = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=5,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": NOTE_SCHEMA}},
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 5 == count_tokens(content_of(cut), MODEL)


def test_a_strict_schema_must_close_its_objects_and_require_every_property(client: OpenAI) -> None:
    loose: Any = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    nested: Any = {**NOTE_SCHEMA, "properties": {"title": loose, "tags": NOTE_SCHEMA["properties"]["tags"]}}

    def answer(schema: Any, strict: bool) -> Any:
        response_format: Any = {
            "type": "json_schema",
            "json_schema": {"name": "note", "schema": schema, "strict": strict},
        }
        return client.chat.completions.create(model=MODEL, messages=ASK, response_format=response_format)

    with pytest.raises(openai.BadRequestError) as caught:
        answer(nested, strict=True)

    assert caught.value.body == {
        "message": "Invalid schema for response_format 'note': In context=('properties', 'title'), "
        "'additionalProperties' is required to be supplied and to be false.",
        "type": "invalid_request_error",
        "code": "invalid_json_schema",
        "param": "response_format",
    }
    jsonschema.validate(json.loads(content_of(answer(nested, strict=False))), nested)  # not strict: taken as is
    jsonschema.validate(json.loads(content_of(answer(NOTE_SCHEMA, strict=True))), NOTE_SCHEMA)


def test_json_object_is_valid_json_and_needs_the_word_json(client: OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=ASK_JSON, response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=ASK, response_format={"type": "json_object"})

    value = json.loads(content_of(answer))
    assert list(value) == ["answer"]
    assert len(value["answer"].split(" ")) == 16
    assert caught.value.body == {
        "message": "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
        "'json_object'.",
        "type": "invalid_request_error",
        "code": "bad_request",
        "param": "messages",
    }


def test_response_format_text_is_the_plain_answer(client: OpenAI) -> None:
    plain = client.chat.completions.create(model=MODEL, messages=ASK)
    text = client.chat.completions.create(model=MODEL, messages=ASK, response_format={"type": "text"})
    assert content_of(text) == content_of(plain)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format.json_schema.name"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": []}}},
         "response_format.json_schema.schema"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"n": "2"}, "n"),
        ({"seed": "x"}, "seed"),
        ({"seed": True}, "seed"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ],
)  # fmt: skip
def test_bad_parameters_are_a_400_naming_them(client: OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=ASK, extra_body=extra)
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"


# --- n -----------------------------------------------------------------------------------------------------


def test_n_gives_n_choices_each_with_its_index(client: OpenAI) -> None:
    one = client.chat.completions.create(model=MODEL, messages=ASK)
    three = client.chat.completions.create(model=MODEL, messages=ASK, n=3, max_tokens=5)

    assert [choice.index for choice in three.choices] == [0, 1, 2]
    texts = [content_of(three, i) for i in range(3)]
    assert len(set(texts)) == 3
    assert texts[0] == " ".join(content_of(one).split(" ")[:5])  # the first choice is the usual answer
    assert [choice.finish_reason for choice in three.choices] == ["length"] * 3
    assert three.usage is not None and three.usage.completion_tokens == 15


def test_n_choices_stream_side_by_side_and_end_one_by_one(client: OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=ASK, n=2, max_tokens=4)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=ASK, n=2, max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
    )

    indexes = [chunk.choices[0].index for chunk in chunks if chunk.choices]
    assert indexes == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    for i in (0, 1):
        mine = [chunk.choices[0] for chunk in chunks if chunk.choices and chunk.choices[0].index == i]
        assert mine[0].delta.role == "assistant"
        assert "".join(choice.delta.content or "" for choice in mine) == content_of(whole, i)
        assert [choice.finish_reason for choice in mine] == [None, None, None, None, "length"]
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens == 8


# --- logprobs ----------------------------------------------------------------------------------------------


def test_logprobs_cover_every_token_with_the_top_alternatives(client: OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, top_logprobs=3)
    plain = client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True)

    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None and logprobs.refusal is None
    assert "".join(entry.token for entry in logprobs.content) == content_of(completion)
    assert len(logprobs.content) == 16
    for entry in logprobs.content:
        assert entry.bytes == list(entry.token.encode())
        assert -2 <= entry.logprob <= 0
        tops = entry.top_logprobs
        assert len(tops) == 3 and len({top.token for top in tops}) == 3
        assert (tops[0].token, tops[0].logprob) == (entry.token, entry.logprob)
        assert [top.logprob for top in tops] == sorted((top.logprob for top in tops), reverse=True)
        assert all(top.bytes == list(top.token.encode()) for top in tops)
    assert plain.choices[0].logprobs is not None and plain.choices[0].logprobs.content is not None
    assert all(entry.top_logprobs == [] for entry in plain.choices[0].logprobs.content)
    assert client.chat.completions.create(model=MODEL, messages=ASK).choices[0].logprobs is None


def test_streamed_logprobs_are_the_same_entries_chunk_by_chunk(client: OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, top_logprobs=2, max_tokens=6)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=ASK, logprobs=True, top_logprobs=2, max_tokens=6, stream=True
        )
    )

    content = [chunk.choices[0] for chunk in chunks if chunk.choices[0].delta.content]
    assert all(c.logprobs is not None and c.logprobs.content is not None for c in content)
    streamed = [entry for c in content for entry in (c.logprobs.content or [] if c.logprobs else [])]
    assert whole.choices[0].logprobs is not None
    assert streamed == whole.choices[0].logprobs.content
    assert [len(c.logprobs.content or []) if c.logprobs else 0 for c in content] == [1] * 6


def test_a_tool_call_has_no_content_logprobs(client: OpenAI) -> None:
    tool: Any = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    completion = client.chat.completions.create(model=MODEL, messages=ASK, tools=[tool], logprobs=True)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and (logprobs.content, logprobs.refusal) == (None, None)


# --- seed --------------------------------------------------------------------------------------------------


def test_the_same_seed_and_prompt_give_the_same_answer_with_a_fingerprint(client: OpenAI) -> None:
    first = client.chat.completions.create(model=MODEL, messages=ASK, seed=42)
    second = client.chat.completions.create(model=MODEL, messages=ASK, seed=42)
    other = client.chat.completions.create(model=MODEL, messages=ASK, seed=43)
    unseeded = client.chat.completions.create(model=MODEL, messages=ASK)

    assert content_of(first) == content_of(second)
    assert len({content_of(first), content_of(other), content_of(unseeded)}) == 3
    assert first.system_fingerprint == second.system_fingerprint == "fp_fake"


# --- tool results ------------------------------------------------------------------------------------------


def test_a_tool_result_is_answered_in_words_unless_a_call_is_forced(client: OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city", "unit"],
            },
        },
    }
    first = client.chat.completions.create(model=MODEL, messages=ASK, tools=[tool])
    [call] = first.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    follow_up: Any = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"},
    ]
    answered = client.chat.completions.create(model=MODEL, messages=follow_up, tools=[tool])
    forced = client.chat.completions.create(model=MODEL, messages=follow_up, tools=[tool], tool_choice="required")

    assert first.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "fake", "unit": "c"}  # valid: the enum's first value
    assert answered.choices[0].finish_reason == "stop"
    assert answered.choices[0].message.tool_calls is None
    assert len(content_of(answered).split(" ")) == 16
    assert forced.choices[0].finish_reason == "tool_calls"
