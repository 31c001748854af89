"""The router without HTTP: keyword scoring, reading the classifier's answer, and choose_route's precedence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from django.conf import settings

from routing.errors import GatewayError, Reason
from routing.models import Category
from routing.router import ROUTING_MODES, Route, choose_route, keyword_category, parse_category_answer, routing_text
from routing.seed import seed_defaults
from routing.selectors import AliasInfo, RoutingConfig, load_routing_config
from routing.services import category_upsert

SMART_FIRST = ("demo/demo-smart", "demo/demo-fast")
FAST_FIRST = ("demo/demo-fast", "demo/demo-smart")


@pytest.fixture
def config(db: None) -> RoutingConfig:
    seed_defaults()
    return load_routing_config()


class Classifier:
    """A stand-in for the classifier model: answers a fixed category (or raises) and records its questions."""

    def __init__(self, answer: str | None = None, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.asked: list[tuple[str, list[str]]] = []

    async def __call__(self, text: str, names: Sequence[str]) -> str | None:
        self.asked.append((text, list(names)))
        if self.error is not None:
            raise self.error
        return self.answer


class Matcher:
    """A stand-in for the semantic matcher (routing/semantic.py, tested with the real model elsewhere)."""

    def __init__(self, answer: str | None = None, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.asked: list[str] = []

    async def __call__(self, text: str) -> str | None:
        self.asked.append(text)
        if self.error is not None:
            raise self.error
        return self.answer


def route(
    config: RoutingConfig,
    text: str,
    *,
    mode: str = "keywords",
    model: str | None = None,
    category: str | None = None,
    has_tools: bool = False,
    default_category: str = "conversation",
    classify: Classifier | None = None,
    similar: Matcher | None = None,
) -> Route:
    return asyncio.run(
        choose_route(
            config,
            text=text,
            model=model,
            category=category,
            has_tools=has_tools,
            mode=mode,
            default_category=default_category,
            classify=classify or Classifier(error=AssertionError("the classifier must not be asked")),
            similar=similar or Matcher(error=AssertionError("the embedding model must not be asked")),
        )
    )


# --- keyword_category -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fix this python function", "code"),
        ("PYTHON?", "code"),
        ("explain why", "reasoning"),
        ("compare the pros and cons, step by step, of rust", "reasoning"),  # 3 reasoning hits beat 1 code hit
        ("tell me a joke", "conversation"),
        ("hello, python", "code"),  # a tie goes to the first name in alphabetical order
        ("pythonic idioms", None),  # whole words only
        ("good morning", None),
        ("", None),
    ],
)
def test_keyword_category_counts_hits(config: RoutingConfig, text: str, expected: str | None) -> None:
    assert keyword_category(config, text) == expected


def test_a_word_counts_once_however_often_it_appears(config: RoutingConfig) -> None:
    assert keyword_category(config, "python python python, explain why") == "reasoning"


def test_the_tools_category_is_never_chosen_by_words(config: RoutingConfig) -> None:
    category_upsert(name="tools", keywords=["weather"])
    assert keyword_category(load_routing_config(), "what is the weather") is None


def test_a_new_category_with_a_phrase_is_matched(config: RoutingConfig) -> None:
    category_upsert(name="travel", keywords=["Flight", "road trip"], models=["demo/demo-fast"])
    fresh = load_routing_config()
    assert keyword_category(fresh, "Plan a ROAD TRIP") == "travel"
    assert keyword_category(fresh, "book a flight") == "travel"


# --- parse_category_answer ----------------------------------------------------------------------------------

NAMES = ["code", "conversation", "reasoning"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("reasoning", "reasoning"),
        ("Category: Code.", "code"),
        ("  CONVERSATION\n", "conversation"),
        ("I would say reasoning, not code", "reasoning"),  # the first name mentioned
        ("codes and conversations", None),  # whole words only
        ("no idea", None),
        ("", None),
    ],
)
def test_parse_category_answer(answer: str, expected: str | None) -> None:
    assert parse_category_answer(answer, NAMES) == expected


def test_parse_category_answer_prefers_the_longer_name_at_the_same_place() -> None:
    names = ["code", "code-review"]
    assert parse_category_answer("code-review", names) == "code-review"
    assert parse_category_answer("code review", names) == "code"


# --- routing_text -------------------------------------------------------------------------------------------


def test_routing_reads_the_last_user_message_only() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You write python."},
        {"role": "user", "content": "explain why"},
        {"role": "assistant", "content": "Because."},
        {"role": "user", "content": [{"type": "text", "text": "tell me"}, {"type": "image_url"}, {"text": "a joke"}]},
    ]
    assert routing_text(messages) == "tell me  a joke"
    assert routing_text([{"role": "system", "content": "x"}]) == ""


# --- choose_route ---------------------------------------------------------------------------------------------


def test_a_concrete_model_is_its_own_one_model_chain(config: RoutingConfig) -> None:
    assert route(config, "explain why", model="demo/demo-fast") == Route("", ("demo/demo-fast",), "model")


def test_a_category_name_as_model_selects_that_chain(config: RoutingConfig) -> None:
    assert route(config, "explain why", model="conversation") == Route("conversation", FAST_FIRST, "category")


def test_a_model_alias_routes_to_its_category_or_its_model(config: RoutingConfig) -> None:
    aliased = RoutingConfig(
        providers=config.providers,
        models=config.models,
        categories=config.categories,
        demo_only=config.demo_only,
        aliases={
            "claude-sonnet-4-5": AliasInfo("claude-sonnet-4-5", "conversation", None),
            "gpt-5": AliasInfo("gpt-5", None, "demo/demo-smart"),
            "o3": AliasInfo("o3", None, "demo/disabled"),
        },
    )
    # The explicit name beats tools and keywords, like a category named in ``model``.
    assert route(aliased, "explain why", model="claude-sonnet-4-5", has_tools=True) == Route(
        "conversation", FAST_FIRST, "alias"
    )
    assert route(aliased, "explain why", model="gpt-5") == Route("", ("demo/demo-smart",), "alias")
    with pytest.raises(GatewayError) as disabled:
        route(aliased, "hi", model="o3")
    assert disabled.value.reason is Reason.NOT_FOUND
    assert (disabled.value.code, disabled.value.param, disabled.value.message) == (
        "model_not_found",
        "model",
        "The model alias 'o3' names 'demo/disabled', which is disabled.",
    )


@pytest.mark.parametrize("alias", ["router", "auto"])
def test_the_router_aliases_route_as_usual(config: RoutingConfig, alias: str) -> None:
    assert route(config, "explain why", model=alias) == Route("reasoning", SMART_FIRST, "keywords")


def test_an_explicit_category_beats_tools_and_keywords(config: RoutingConfig) -> None:
    assert route(config, "explain why", category="code", has_tools=True) == Route("code", SMART_FIRST, "category")


def test_unknown_models_and_categories_are_not_found(config: RoutingConfig) -> None:
    with pytest.raises(GatewayError) as model_error:
        route(config, "hi", model="demo/nope")
    assert model_error.value.reason is Reason.NOT_FOUND
    assert (model_error.value.code, model_error.value.param) == ("model_not_found", "model")
    with pytest.raises(GatewayError) as category_error:
        route(config, "hi", category="nope")
    assert category_error.value.reason is Reason.NOT_FOUND
    assert (category_error.value.code, category_error.value.param) == ("category_not_found", "category")


def test_a_category_named_without_a_model_is_a_conflict(db: None) -> None:
    seed_defaults()
    Category.objects.create(name="empty")
    config = load_routing_config()
    with pytest.raises(GatewayError) as by_category:
        route(config, "hi", category="empty")
    with pytest.raises(GatewayError) as by_model:
        route(config, "hi", model="empty")
    for error, param in ((by_category.value, "category"), (by_model.value, "model")):
        assert error.reason is Reason.CONFLICT
        assert (error.code, error.param) == ("category_has_no_models", param)


def test_tools_go_to_the_tools_category_in_every_mode(config: RoutingConfig) -> None:
    for mode in ("keywords", "llm", "hybrid", "semantic"):
        assert route(config, "explain why", has_tools=True, mode=mode) == Route("tools", SMART_FIRST, "tools")


def test_semantic_mode_takes_the_matchers_category(config: RoutingConfig) -> None:
    matcher = Matcher(answer="code")
    assert route(config, "explain why", mode="semantic", similar=matcher) == Route("code", SMART_FIRST, "semantic")
    assert matcher.asked == ["explain why"]


@pytest.mark.parametrize("matcher", [Matcher(answer=None), Matcher(error=RuntimeError("model down"))])
def test_semantic_mode_falls_back_to_keywords(config: RoutingConfig, matcher: Matcher) -> None:
    assert route(config, "explain why", mode="semantic", similar=matcher) == Route("reasoning", SMART_FIRST, "keywords")
    assert route(config, "good morning", mode="semantic", similar=matcher) == Route(
        "conversation", FAST_FIRST, "default"
    )


def test_no_keyword_means_the_default_category(config: RoutingConfig) -> None:
    assert route(config, "good morning") == Route("conversation", FAST_FIRST, "default")


def test_a_missing_default_category_falls_to_the_first_other_than_tools(config: RoutingConfig) -> None:
    assert route(config, "good morning", default_category="gone") == Route("code", SMART_FIRST, "default")


def test_with_no_category_to_route_to_the_router_is_unavailable(config: RoutingConfig) -> None:
    only_tools = {"tools": config.categories["tools"]}
    for categories in ({}, only_tools):
        bare = RoutingConfig(providers={}, models={}, categories=categories, demo_only=False)
        with pytest.raises(GatewayError) as error:
            route(bare, "good morning")
        assert error.value.reason is Reason.UNAVAILABLE
        assert error.value.code == "no_category"


def test_llm_mode_takes_the_classifiers_answer(config: RoutingConfig) -> None:
    classifier = Classifier("conversation")
    assert route(config, "explain why", mode="llm", classify=classifier) == Route("conversation", FAST_FIRST, "llm")
    assert classifier.asked == [("explain why", ["code", "conversation", "reasoning"])]


def test_llm_mode_falls_back_to_keywords_when_the_classifier_fails(config: RoutingConfig) -> None:
    for classifier in (Classifier(error=TimeoutError()), Classifier(error=RuntimeError("down")), Classifier(None)):
        assert route(config, "explain why", mode="llm", classify=classifier) == Route(
            "reasoning", SMART_FIRST, "keywords"
        )
        assert len(classifier.asked) == 1


def test_llm_mode_with_neither_an_answer_nor_a_keyword_uses_the_default(config: RoutingConfig) -> None:
    assert route(config, "good morning", mode="llm", classify=Classifier(None)) == Route(
        "conversation", FAST_FIRST, "default"
    )


def test_hybrid_mode_asks_the_classifier_only_without_a_keyword(config: RoutingConfig) -> None:
    classifier = Classifier("reasoning")
    assert route(config, "Fix this python function", mode="hybrid", classify=classifier) == Route(
        "code", SMART_FIRST, "keywords"
    )
    assert classifier.asked == []
    assert route(config, "good morning", mode="hybrid", classify=classifier) == Route("reasoning", SMART_FIRST, "llm")
    assert classifier.asked == [("good morning", ["code", "conversation", "reasoning"])]


def test_hybrid_mode_uses_the_default_when_the_classifier_fails(config: RoutingConfig) -> None:
    classifier = Classifier(error=RuntimeError("down"))
    assert route(config, "good morning", mode="hybrid", classify=classifier) == Route(
        "conversation", FAST_FIRST, "default"
    )


def test_the_modes_the_settings_accept_are_the_routers() -> None:
    assert tuple(ROUTING_MODES) == settings.ROUTING_MODES


def test_only_the_modes_that_call_no_model_route_before_the_limits() -> None:
    before = {name: mode.routes_before_limits for name, mode in ROUTING_MODES.items()}
    assert before == {"keywords": True, "llm": False, "hybrid": False, "semantic": False}
