"""The ``semantic`` routing mode with the real MiniLM model: requests go to the category of their nearest
example, and examples edited by an admin take effect (tools before meaning: test_router_unit.py)."""

from __future__ import annotations

import pytest

from accounts.services import apikey_create
from routing.services import category_upsert
from tests.fixtures import Fake, Gateway
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def raw(gateway: Gateway) -> str:
    return apikey_create(name="k")[1]


def routed(gateway: Gateway, raw: str, prompt: str) -> tuple[str, str]:
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate",
        {"prompt": prompt, "route_mode": "semantic", "max_tokens": 3},
        key=raw,
        timeout=60,
    )
    assert reply.status == 200, reply.text
    meta = reply.json()["meta"]
    return meta["category"], meta["route_mode"]


# None of these shares a keyword with its category: only the meaning can route them.
@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("Implement a linked list reversal in Go with generics", "code"),
        ("My unit tests keep failing after I upgraded the web framework", "code"),
        ("What would happen to the tides if the moon were twice as far away?", "reasoning"),
        ("Is it cheaper to rent or to buy a flat over twenty years?", "reasoning"),
        ("Good evening! I hope your day went well", "conversation"),
        ("Can you recommend a nice film for tonight?", "conversation"),
    ],
)
def test_requests_go_to_the_category_of_their_nearest_example(
    gateway: Gateway, fake: Fake, raw: str, prompt: str, category: str
) -> None:
    assert routed(gateway, raw, prompt) == (category, "semantic")


def test_edited_examples_take_effect(gateway: Gateway, fake: Fake, raw: str) -> None:
    prompt = "Plan a three-day hiking trip in the Alps"
    before = routed(gateway, raw, prompt)
    category_upsert(
        name="travel",
        models=["demo/demo-fast"],
        examples=["Plan my holiday itinerary", "Which hiking trails should I do?"],
    )
    assert before != ("travel", "semantic")
    assert routed(gateway, raw, prompt) == ("travel", "semantic")
