"""``routing.access``: which models a key may use, from its list and its team's (pure, no database)."""

from __future__ import annotations

import pytest

from accounts.selectors import KeyInfo
from routing.access import allowed_route, model_allowed
from routing.errors import GatewayError
from routing.router import Route
from routing.selectors import CategoryInfo, RoutingConfig

CONFIG = RoutingConfig(
    providers={},
    models={},
    categories={"code": CategoryInfo("code", "", (), ("openai/gpt-4o", "demo/fast"), True)},
    demo_only=False,
)


def key(own: tuple[str, ...] = (), team: tuple[str, ...] = ()) -> KeyInfo:
    return KeyInfo(1, "k", False, None, None, None, None, None, "h", allowed_models=own, team_allowed_models=team)


@pytest.mark.parametrize(
    ("patterns", "model", "allowed"),
    [
        ((), "anything/at-all", True),
        (("openai/gpt-4o",), "openai/gpt-4o", True),
        (("openai/gpt-4o",), "openai/gpt-4o-mini", False),  # an id is exact, not a prefix
        (("openai/*",), "openai/gpt-4o-mini", True),
        (("openai/*",), "openrouter/openai/gpt-4o", False),
        (("*/gpt-4o",), "openai/gpt-4o", True),
        (("openai/gpt-4?",), "openai/gpt-4o", True),
        (("code",), "demo/fast", True),  # a category: the models of its chain
        (("code",), "demo/smart", False),
        (("nocategory",), "demo/fast", False),
        (("OpenAI/*",), "openai/gpt-4o", False),  # case counts, as in model ids
    ],
)
def test_a_pattern_allows_exactly_its_models(patterns: tuple[str, ...], model: str, allowed: bool) -> None:
    assert model_allowed(key(patterns), model, CONFIG) is allowed
    assert model_allowed(key(team=patterns), model, CONFIG) is allowed


def test_a_model_must_pass_the_key_and_the_team() -> None:
    both = key(own=("openai/*",), team=("code",))
    assert [m for m in ("openai/gpt-4o", "openai/o3", "demo/fast") if model_allowed(both, m, CONFIG)] == [
        "openai/gpt-4o"
    ]
    assert model_allowed(None, "openai/o3", CONFIG)  # a session's job: no key, no list


def test_a_route_keeps_the_allowed_models_in_their_order_or_is_a_403() -> None:
    route = Route("code", ("openai/gpt-4o", "demo/fast", "demo/smart"), "keywords")
    assert allowed_route(key(("demo/*",)), route, CONFIG) == Route("code", ("demo/fast", "demo/smart"), "keywords")
    assert allowed_route(key(), route, CONFIG) is route
    with pytest.raises(GatewayError) as caught:
        allowed_route(key(("anthropic/*",)), route, CONFIG)
    assert (caught.value.code, caught.value.param, caught.value.message) == (
        "model_not_allowed",
        "model",
        "This API key may use none of the models of the category 'code'.",
    )
