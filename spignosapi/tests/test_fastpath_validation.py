"""spignosapi/fastpath/validation.py validates as the DRF serializer does, on valid and invalid bodies.

For thousands of bodies built at random from the values clients send (and get wrong), ``validated()`` and the
stock serializer (``Serializer(data=...).is_valid()``) must agree exactly: the same validated data for a
valid body, the same errors, and so the same error envelope, for an invalid one. The fast path itself must
agree with DRF on every body it accepts, and the common shapes must take it.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from rest_framework.exceptions import ValidationError

from jobs.serializers import GenerateAsyncInput
from rag.serializers import EmbeddingsInput, RagInput
from routing.serializers import ChatCompletionInput, ChatParamsInput, GenerateInput
from spignosapi.api.errors import error_response
from spignosapi.fastpath.validation import _plan_for, validated

VALUES: list[Any] = [
    None, "", " ", "x", " hi ", "a\x00b", "\ud800", "ok-slug", "bad slug", "x" * 300, 0, 1, -1, 2, 3, 1.5, 0.0,
    2.0000001, True, False, [], [1], {}, {"a": 1}, "keywords", "llm", "semantic", "nope", 10**7, 1e308, [None],
    [{"role": "user", "content": "hi"}], [{"role": "bogus", "content": "hi"}], [{"role": "user"}],
    [{"role": "assistant", "content": None}], ["a", "b"], ["a"] * 5, "auto", "none", {"type": "function"},
    [{"type": "function", "function": {"name": "f"}}], [{"type": "x"}], [{}], {"include_usage": True},
    "float", "base64", ["one", "two"], 20, 21, "docs", {"type": "json_object"}, {"type": "json_schema"},
    {"type": "json_schema", "json_schema": {"name": "Out", "schema": {"type": "object"}, "strict": True}},
]  # fmt: skip
GENERATE_FIELDS = ["prompt", "system", "temperature", "top_p", "max_tokens", "user_id", "category", "model",
                   "stream", "route_mode", "priority"]  # fmt: skip
CHAT_FIELDS = ["model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stop",
               "tools", "tool_choice", "stream", "stream_options", "user"]  # fmt: skip
CHAT_PARAMS_FIELDS = ["n", "seed", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
                      "parallel_tool_calls", "response_format", "reasoning_effort", "metadata", "service_tier",
                      "store"]  # fmt: skip
EMBEDDINGS_FIELDS = ["input", "model", "encoding_format", "user"]
RAG_FIELDS = [*GENERATE_FIELDS, "query", "collection", "top_k"]

SERIALIZERS = [
    (GenerateInput, GENERATE_FIELDS, {"prompt": "hello"}),
    (GenerateAsyncInput, GENERATE_FIELDS, {"prompt": "hello"}),
    (ChatCompletionInput, CHAT_FIELDS, {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
    (ChatParamsInput, CHAT_PARAMS_FIELDS, {"seed": 1}),
    (EmbeddingsInput, EMBEDDINGS_FIELDS, {"input": "hello"}),
    (RagInput, RAG_FIELDS, {"prompt": "hello", "query": "what", "collection": "docs"}),
]


def bodies(fields: list[str], base: dict[str, Any], count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    result = [dict(base), {}]
    for _ in range(count):
        data = dict(base)
        for name in rng.sample(fields, rng.randint(0, 4)):
            if rng.random() < 0.2:
                data.pop(name, None)
            else:
                data[name] = rng.choice(VALUES)
        result.append(data)
    return result


def stock(serializer_class: Any, data: dict[str, Any]) -> dict[str, Any] | ValidationError:
    """What a DRF view gets: ``validated_data``, or the ``ValidationError`` ``is_valid(raise_exception=True)``
    raises."""
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return dict(serializer.validated_data)
    return ValidationError(serializer.errors)


def ours(serializer_class: Any, data: dict[str, Any]) -> dict[str, Any] | ValidationError:
    try:
        return validated(serializer_class, data)
    except ValidationError as exc:
        return exc


@pytest.mark.parametrize("serializer_class, fields, base", SERIALIZERS)
def test_validated_gives_the_serializers_data_and_errors(
    serializer_class: Any, fields: list[str], base: dict[str, Any]
) -> None:
    valid = invalid = 0
    for data in bodies(fields, base, 1500):
        expected, got = stock(serializer_class, data), ours(serializer_class, data)
        if isinstance(expected, ValidationError):
            invalid += 1
            assert isinstance(got, ValidationError), data
            assert got.detail == expected.detail, data
            envelope, stock_envelope = error_response(got), error_response(expected)
            assert (envelope.status_code, envelope.content) == (stock_envelope.status_code, stock_envelope.content)
        else:
            valid += 1
            assert got == expected, data
    assert valid > 200 and invalid > 200  # both kinds were compared


@pytest.mark.parametrize("serializer_class, fields, base", SERIALIZERS)
def test_the_fast_path_agrees_with_drf_on_every_body_it_accepts(
    serializer_class: Any, fields: list[str], base: dict[str, Any]
) -> None:
    plan = _plan_for(serializer_class)
    assert plan is not None
    fast = 0
    for data in bodies(fields, base, 1500):
        result = plan.validate(data)
        if result is not None:
            fast += 1
            assert result == stock(serializer_class, data), data
    assert fast > 200  # the common shapes do take the fast path
    assert plan.validate(base) == stock(serializer_class, base)
