"""Routing over real HTTP with the fake upstream: modes, explicit category or model, and fallback along a chain."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.services import apikey_create
from ledger.models import UsageRecord
from routing.models import CircuitBreaker, LLMModel, Provider
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import Reply, call, sse_events

pytestmark = pytest.mark.django_db(transaction=True)

SMART_OK = {"model": "demo/demo-smart", "outcome": "ok"}
FAST_OK = {"model": "demo/demo-fast", "outcome": "ok"}
CLASSIFIER_SYSTEM = (
    "Classify the user's request into exactly one category. Answer with the category name only. "
    "Categories: code, conversation, reasoning."
)


@pytest.fixture
def raw(gateway: Gateway) -> str:
    return apikey_create(name="k")[1]


def generate(gateway: Gateway, raw: str, **body: object) -> Reply:
    return call("POST", gateway.url + "/api/v1/generate", {"max_tokens": 3, **body}, key=raw)


def routed(reply: Reply) -> tuple[str | None, str, str]:
    """(category, route_mode, model) of a successful reply."""
    assert reply.status == 200, reply.text
    meta = reply.json()["meta"]
    return meta["category"], meta["route_mode"], meta["model"]


def requests_per_model(fake: Fake) -> dict[str, int]:
    counts = fake.stats()["requests"]
    assert isinstance(counts, dict)
    return counts


def last_body(fake: Fake, model: str) -> dict[str, Any]:
    """The last request body the fake upstream received for a model."""
    last = fake.stats()["last"]
    assert isinstance(last, dict)
    body = last[model]
    assert isinstance(body, dict)
    return body


def error_of(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, reply.text
    error = reply.json()["error"]
    assert isinstance(error, dict)
    return error


# --- keywords (the default mode) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Fix this python function", ("code", "keywords", "demo/demo-smart")),
        ("Explain why the sky is blue", ("reasoning", "keywords", "demo/demo-smart")),
        ("Tell me a joke", ("conversation", "keywords", "demo/demo-fast")),
        ("good morning", ("conversation", "default", "demo/demo-fast")),
    ],
)
def test_keywords_pick_the_category(
    gateway: Gateway, fake: Fake, raw: str, prompt: str, expected: tuple[str, str, str]
) -> None:
    assert routed(generate(gateway, raw, prompt=prompt)) == expected
    assert requests_per_model(fake) == {expected[2].removeprefix("demo/"): 1}  # one call, no classifier


def test_the_routing_mode_is_booked_on_the_usage_row(gateway: Gateway, fake: Fake, raw: str) -> None:
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate",
        {"prompt": "Fix this python function", "max_tokens": 3},
        key=raw,
        headers={"X-Request-ID": "req-route-1"},
    )
    assert reply.status == 200
    assert wait_until(lambda: UsageRecord.objects.filter(request_id="req-route-1").exists(), timeout=10)
    row = UsageRecord.objects.get(request_id="req-route-1")
    assert (row.category, row.route_mode, row.model) == ("code", "keywords", "demo/demo-smart")


# --- tools ---------------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_a_request_with_tools_goes_to_the_tools_category(gateway: Gateway, fake: Fake, raw: str) -> None:
    reply = call(
        "POST",
        gateway.url + "/v1/chat/completions",
        # "hello" alone would route to conversation: the tools decide
        {"model": "router", "messages": [{"role": "user", "content": "hello"}], "tools": [WEATHER_TOOL]},
        key=raw,
    )
    assert reply.status == 200, reply.text
    assert reply.headers["x-spignos-route"] == "tools/demo/demo-smart/1"
    assert reply.json()["model"] == "demo/demo-smart"
    assert requests_per_model(fake) == {"demo-smart": 1}
    assert last_body(fake, "demo-smart")["tools"] == [WEATHER_TOOL]


def test_without_tools_the_same_message_is_a_conversation(gateway: Gateway, fake: Fake, raw: str) -> None:
    reply = call(
        "POST",
        gateway.url + "/v1/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
        key=raw,
    )
    assert reply.status == 200, reply.text
    assert reply.headers["x-spignos-route"] == "conversation/demo/demo-fast/1"


# --- llm and hybrid --------------------------------------------------------------------------------------


def test_llm_mode_asks_the_classifier_model(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-fast": {"echo": 1}})  # the classifier answers with the prompt's words
    reply = generate(gateway, raw, prompt="please route me to reasoning", route_mode="llm")
    assert routed(reply) == ("reasoning", "llm", "demo/demo-smart")
    assert requests_per_model(fake) == {"demo-fast": 1, "demo-smart": 1}
    body = last_body(fake, "demo-fast")
    assert body["messages"] == [
        {"role": "system", "content": CLASSIFIER_SYSTEM},
        {"role": "user", "content": "please route me to reasoning"},
    ]
    assert (body["max_tokens"], body["temperature"]) == (8, 0.0)


def test_llm_mode_uses_the_classifier_even_when_a_keyword_matches(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-fast": {"echo": 1}})
    reply = generate(gateway, raw, prompt="conversation about python", route_mode="llm")
    assert routed(reply) == ("conversation", "llm", "demo/demo-fast")


def test_hybrid_mode_does_not_ask_the_classifier_when_a_keyword_matches(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-fast": {"echo": 1}})
    reply = generate(gateway, raw, prompt="Fix this python function", route_mode="hybrid")
    assert routed(reply) == ("code", "keywords", "demo/demo-smart")
    assert requests_per_model(fake) == {"demo-smart": 1}


def test_hybrid_mode_asks_the_classifier_when_no_keyword_matches(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-fast": {"echo": 1}})
    reply = generate(gateway, raw, prompt="please route me to reasoning", route_mode="hybrid")
    assert routed(reply) == ("reasoning", "llm", "demo/demo-smart")
    assert requests_per_model(fake) == {"demo-fast": 1, "demo-smart": 1}


def test_an_answer_naming_no_category_routes_to_the_default(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-fast": {"echo": 1}})
    reply = generate(gateway, raw, prompt="please route me somewhere nice", route_mode="hybrid")
    assert routed(reply) == ("conversation", "default", "demo/demo-fast")
    assert requests_per_model(fake) == {"demo-fast": 2}  # the classifier, then the answer


def test_a_failing_classifier_falls_back_to_keywords(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-fast": {"status": 500}})
    reply = generate(gateway, raw, prompt="explain why", route_mode="llm")
    assert routed(reply) == ("reasoning", "keywords", "demo/demo-smart")
    assert requests_per_model(fake) == {"demo-fast": 1, "demo-smart": 1}
    # the classifier is not a chain attempt: its failure does not count against demo-fast's breaker
    assert reply.json()["meta"]["attempts"] == [SMART_OK]
    assert not CircuitBreaker.objects.exists()


def test_a_classifier_that_times_out_falls_back_to_keywords(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-fast": {"hang": 1}})  # answers after ROUTING_CLASSIFIER_TIMEOUT_S (3 s): never
    reply = generate(gateway, raw, prompt="explain why", route_mode="llm")
    assert routed(reply) == ("reasoning", "keywords", "demo/demo-smart")
    assert reply.json()["meta"]["response_time_ms"] >= 3000


# --- explicit category or model, and bad choices -----------------------------------------------------------


def test_an_explicit_category_wins_over_keywords(gateway: Gateway, fake: Fake, raw: str) -> None:
    reply = generate(gateway, raw, prompt="Fix this python function", category="conversation")
    assert routed(reply) == ("conversation", "category", "demo/demo-fast")


def test_an_explicit_model_is_called_alone(gateway: Gateway, fake: Fake, raw: str) -> None:
    reply = generate(gateway, raw, prompt="Fix this python function", model="demo/demo-fast")
    assert routed(reply) == (None, "model", "demo/demo-fast")
    assert reply.json()["meta"]["attempts"] == [FAST_OK]


def test_a_category_name_in_the_model_field_selects_that_chain(gateway: Gateway, fake: Fake, raw: str) -> None:
    reply = generate(gateway, raw, prompt="hello", model="reasoning")
    assert routed(reply) == ("reasoning", "category", "demo/demo-smart")


def test_router_in_the_model_field_routes_as_usual(gateway: Gateway, fake: Fake, raw: str) -> None:
    reply = generate(gateway, raw, prompt="Fix this python function", model="router")
    assert routed(reply) == ("code", "keywords", "demo/demo-smart")


def test_an_unknown_category_is_404(gateway: Gateway, fake: Fake, raw: str) -> None:
    error = error_of(generate(gateway, raw, prompt="hi", category="nope"), 404)
    assert (error["type"], error["code"], error["param"]) == ("not_found_error", "category_not_found", "category")
    assert error["message"] == "The category 'nope' does not exist."
    assert requests_per_model(fake) == {}


def test_an_unknown_model_is_404(gateway: Gateway, fake: Fake, raw: str) -> None:
    error = error_of(generate(gateway, raw, prompt="hi", model="demo/nope"), 404)
    assert (error["type"], error["code"], error["param"]) == ("not_found_error", "model_not_found", "model")


def test_a_disabled_model_is_unknown(gateway: Gateway, fake: Fake, raw: str) -> None:
    LLMModel.objects.filter(name="demo-fast").update(enabled=False)
    routing_changed()
    error = error_of(generate(gateway, raw, prompt="hi", model="demo/demo-fast"), 404)
    assert error["code"] == "model_not_found"
    # and it drops out of the chains
    assert generate(gateway, raw, prompt="hello").json()["meta"]["attempts"] == [SMART_OK]


def test_an_unknown_mode_is_a_validation_error(gateway: Gateway, fake: Fake, raw: str) -> None:
    error = error_of(generate(gateway, raw, prompt="hi", route_mode="fuzzy"), 400)
    assert error["param"] == "route_mode"


# --- fallback along the chain ----------------------------------------------------------------------------


def smart_breaker() -> CircuitBreaker:
    return CircuitBreaker.objects.get(model__name="demo-smart")


def test_it_falls_back_when_a_model_times_out(gateway: Gateway, fake: Fake, raw: str) -> None:
    Provider.objects.filter(name="demo").update(timeout_s=0.5)
    routing_changed()
    fake.configure(**{"demo-smart": {"hang": 1}})
    reply = generate(gateway, raw, prompt="explain why")
    assert routed(reply) == ("reasoning", "keywords", "demo/demo-fast")
    first, second = reply.json()["meta"]["attempts"]
    assert (first["model"], first["outcome"]) == ("demo/demo-smart", "error")
    assert first["error"].startswith("timeout: ")
    assert second == FAST_OK
    assert (smart_breaker().consecutive_failures, smart_breaker().state) == (1, "closed")


def test_a_slow_model_past_its_timeout_is_a_timeout_too(gateway: Gateway, fake: Fake, raw: str) -> None:
    Provider.objects.filter(name="demo").update(timeout_s=0.3)
    routing_changed()
    fake.configure(**{"demo-smart": {"latency_ms": 1500}})
    reply = generate(gateway, raw, prompt="explain why")
    assert routed(reply) == ("reasoning", "keywords", "demo/demo-fast")
    assert reply.json()["meta"]["attempts"][0]["error"].startswith("timeout: ")


def test_when_every_model_times_out_the_answer_is_504(gateway: Gateway, fake: Fake, raw: str) -> None:
    Provider.objects.filter(name="demo").update(timeout_s=0.3)
    routing_changed()
    fake.configure(**{"*": {"hang": 1}})
    error = error_of(generate(gateway, raw, prompt="explain why"), 504)
    assert error["type"] == "timeout_error"
    assert [(a["model"], a["outcome"]) for a in error["attempts"]] == [
        ("demo/demo-smart", "error"),
        ("demo/demo-fast", "error"),
    ]


def test_it_falls_back_on_a_429(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-smart": {"status": 429, "retry_after": 7}})
    reply = generate(gateway, raw, prompt="explain why")
    assert routed(reply) == ("reasoning", "keywords", "demo/demo-fast")
    first, second = reply.json()["meta"]["attempts"]
    assert (first["model"], first["outcome"]) == ("demo/demo-smart", "error")
    assert first["error"].startswith("rate_limited: ")
    assert first["error"].endswith("(HTTP 429)")
    assert second == FAST_OK
    assert smart_breaker().consecutive_failures == 1


def test_a_streamed_request_falls_back_before_its_first_token(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-smart": {"status": 503}})
    reply = generate(gateway, raw, prompt="explain why", stream=True)
    assert reply.status == 200, reply.text
    complete = sse_events(reply)[-1]
    assert complete["type"] == "complete"
    assert [(a["model"], a["outcome"]) for a in complete["meta"]["attempts"]] == [
        ("demo/demo-smart", "error"),
        ("demo/demo-fast", "ok"),
    ]
