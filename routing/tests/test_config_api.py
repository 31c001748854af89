"""The staff routing-configuration endpoints, over real HTTP; a generate request then follows the new config."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.services import apikey_create
from routing.breaker import Breakers
from routing.models import Category, CircuitBreaker, LLMModel, Provider
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway
from tests.http import Reply, call

pytestmark = pytest.mark.django_db(transaction=True)

BUILTIN_CHAINS = {
    "code": ["demo/demo-smart", "demo/demo-fast"],
    "conversation": ["demo/demo-fast", "demo/demo-smart"],
    "reasoning": ["demo/demo-smart", "demo/demo-fast"],
    "tools": ["demo/demo-smart", "demo/demo-fast"],
}


@pytest.fixture
def staff(gateway: Gateway) -> str:
    return apikey_create(name="staff", is_staff=True)[1]


def api(gateway: Gateway, method: str, path: str, body: Any = None, *, key: str | None) -> Reply:
    return call(method, gateway.url + "/api/v1/routing/" + path, body, key=key)


def config(gateway: Gateway, staff: str) -> dict[str, Any]:
    reply = api(gateway, "GET", "config", key=staff)
    assert reply.status == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def chains(gateway: Gateway, staff: str) -> dict[str, list[str]]:
    return {c["name"]: c["models"] for c in config(gateway, staff)["categories"]}


def generate(gateway: Gateway, prompt: str) -> dict[str, Any]:
    _, raw = apikey_create(name="user")
    reply = call("POST", gateway.url + "/api/v1/generate", {"prompt": prompt, "max_tokens": 3}, key=raw)
    assert reply.status == 200, reply.text
    meta: dict[str, Any] = reply.json()["meta"]
    return meta


def test_it_shows_the_routing_configuration(gateway: Gateway, staff: str) -> None:
    body = config(gateway, staff)
    assert (body["mode"], body["default_category"], body["classifier_model"]) == (
        "keywords",
        "conversation",
        "demo/demo-fast",
    )
    assert body["modes"] == ["keywords", "llm", "hybrid", "semantic"]
    assert body["circuit_breaker"] == {"failure_threshold": 3, "open_seconds": 300.0}
    assert body["models"] == ["demo/demo-embed", "demo/demo-fast", "demo/demo-smart", "local/all-minilm-l6-v2"]
    assert body["embedding_model"] == "local/all-minilm-l6-v2"
    # The in-process embedding model answers no chat: with the demo upstream alone it is still demo mode.
    assert body["demo_only"] is True
    assert [(c["name"], c["builtin"], c["models"]) for c in body["categories"]] == [
        (name, True, chain) for name, chain in sorted(BUILTIN_CHAINS.items())
    ]
    assert "python" in body["categories"][0]["keywords"]
    assert body["providers"] == [
        {
            "name": "demo",
            "kind": "openai_compatible",
            "base_url": Provider.objects.get(name="demo").base_url,
            "has_api_key": False,
            "grid_gco2e_per_kwh": 475.0,  # (the global ENERGY_GRID_G_CO2E_PER_KWH: no provider sets one)
            "pue": 1.0,
        },
        {
            "name": "local",
            "kind": "local",
            "base_url": "",
            "has_api_key": False,
            "grid_gco2e_per_kwh": 475.0,
            "pue": 1.0,
        },
    ]
    assert body["strategies"] == ["ordered", "latency", "cost", "carbon"]
    assert body["latency_figures"] == {"max_age_s": 900.0, "min_samples": 5}
    assert {c["strategy"] for c in body["categories"]} == {"ordered"}


def test_it_never_shows_a_providers_secret(staff_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process, so the process building the answer does hold the secrets.
    monkeypatch.setenv("SPIGNOS_TEST_PROVIDER_KEY", "sk-live-very-secret-1234")
    Provider.objects.create(
        name="vault",
        kind="openai",
        base_url="https://svc-user:hunter2-password@llm.example.com/v1",
        api_key_env="SPIGNOS_TEST_PROVIDER_KEY",
    )
    routing_changed()
    response = staff_client.get("/api/v1/routing/config")
    assert response.status_code == 200
    text = response.content.decode()
    assert "sk-live-very-secret-1234" not in text
    assert "hunter2-password" not in text
    [vault] = [p for p in response.json()["providers"] if p["name"] == "vault"]
    assert vault == {
        "name": "vault",
        "kind": "openai",
        "base_url": "https://***@llm.example.com/v1",
        "has_api_key": True,
        "grid_gco2e_per_kwh": 475.0,
        "pue": 1.0,
    }


# --- categories ---------------------------------------------------------------------------------------------


def test_it_creates_then_updates_a_category(gateway: Gateway, staff: str) -> None:
    created = api(
        gateway,
        "POST",
        "categories",
        {"name": "animals", "description": "Zoology.", "keywords": ["Zebra", " lion ", "zebra"], "models": []},
        key=staff,
    )
    assert created.status == 201, created.text
    assert created.json() == {
        "name": "animals",
        "description": "Zoology.",
        "keywords": ["lion", "zebra"],
        "models": [],
        "examples": [],
        "builtin": False,
        "strategy": "ordered",
    }

    updated = api(
        gateway,
        "POST",
        "categories",
        {"name": "animals", "models": ["demo/demo-smart", "demo/demo-fast"], "examples": [" Do zebras sleep? "]},
        key=staff,
    )
    assert updated.status == 200, updated.text
    assert updated.json() == {
        "name": "animals",
        "description": "Zoology.",  # what the update left out stays
        "keywords": ["lion", "zebra"],
        "models": ["demo/demo-smart", "demo/demo-fast"],
        "examples": ["Do zebras sleep?"],
        "builtin": False,
        "strategy": "ordered",
    }
    assert chains(gateway, staff)["animals"] == ["demo/demo-smart", "demo/demo-fast"]


def test_it_sets_a_categorys_strategy(gateway: Gateway, staff: str) -> None:
    reply = api(gateway, "POST", "categories", {"name": "animals", "strategy": "carbon"}, key=staff)
    assert reply.status == 201, reply.text
    assert reply.json()["strategy"] == "carbon"
    # An update that leaves the strategy out keeps it; another one changes it.
    assert api(gateway, "POST", "categories", {"name": "animals", "keywords": ["zebra"]}, key=staff).status == 200
    assert Category.objects.get(name="animals").strategy == "carbon"
    reply = api(gateway, "POST", "categories", {"name": "animals", "strategy": "latency"}, key=staff)
    assert (reply.status, reply.json()["strategy"]) == (200, "latency")
    [listed] = [c for c in config(gateway, staff)["categories"] if c["name"] == "animals"]
    assert listed["strategy"] == "latency"


@pytest.mark.parametrize("strategy", ["fastest", "", None, 3, ["cost"]])
def test_it_refuses_an_unknown_strategy_and_stores_nothing(gateway: Gateway, staff: str, strategy: Any) -> None:
    reply = api(gateway, "POST", "categories", {"name": "animals", "strategy": strategy}, key=staff)
    assert reply.status == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "strategy")
    if strategy == "fastest":
        assert error["message"] == 'strategy: "fastest" is not a strategy (one of ordered, latency, cost, carbon).'
    assert not Category.objects.filter(name="animals").exists()


def test_a_category_naming_an_unknown_model_is_not_created(gateway: Gateway, staff: str) -> None:
    reply = api(gateway, "POST", "categories", {"name": "animals", "models": ["demo/demo-fast", "x/y"]}, key=staff)
    assert reply.status == 404
    assert reply.json()["error"] == {
        "message": "The model 'x/y' does not exist.",
        "type": "not_found_error",
        "code": "model_not_found",
        "param": "models",
    }
    assert not Category.objects.filter(name="animals").exists()


def test_it_validates_a_category(gateway: Gateway, staff: str) -> None:
    reply = api(gateway, "POST", "categories", {"name": "not a slug", "keywords": "zebra"}, key=staff)
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "name"


def test_it_deletes_a_custom_category_but_not_a_built_in_one(gateway: Gateway, staff: str) -> None:
    assert api(gateway, "POST", "categories", {"name": "animals"}, key=staff).status == 201

    deleted = api(gateway, "DELETE", "categories/animals", key=staff)
    assert (deleted.status, deleted.text) == (204, "")
    assert "animals" not in chains(gateway, staff)

    refused = api(gateway, "DELETE", "categories/code", key=staff)
    assert refused.status == 409
    assert refused.json()["error"] == {
        "message": "The built-in category 'code' cannot be deleted.",
        "type": "conflict_error",
        "code": "builtin_category",
        "param": None,
    }
    assert Category.objects.filter(name="code").exists()

    missing = api(gateway, "DELETE", "categories/animals", key=staff)
    assert (missing.status, missing.json()["error"]["code"]) == (404, "category_not_found")


# --- model mapping ------------------------------------------------------------------------------------------


def test_it_sets_a_chain_in_the_order_given(gateway: Gateway, staff: str) -> None:
    reply = api(
        gateway,
        "POST",
        "model-mapping",
        {"category": "conversation", "models": ["demo/demo-smart", "demo/demo-fast"]},
        key=staff,
    )
    assert reply.status == 200, reply.text
    assert reply.json()["models"] == ["demo/demo-smart", "demo/demo-fast"]
    assert chains(gateway, staff) == {**BUILTIN_CHAINS, "conversation": ["demo/demo-smart", "demo/demo-fast"]}


def test_it_refuses_an_unknown_model_a_duplicate_or_an_unknown_category(gateway: Gateway, staff: str) -> None:
    unknown = api(gateway, "POST", "model-mapping", {"category": "code", "models": ["demo/nope"]}, key=staff)
    assert unknown.status == 404
    assert (unknown.json()["error"]["code"], unknown.json()["error"]["param"]) == ("model_not_found", "models")

    duplicate = api(
        gateway,
        "POST",
        "model-mapping",
        {"category": "code", "models": ["demo/demo-fast", "demo/demo-fast"]},
        key=staff,
    )
    assert duplicate.status == 400
    assert duplicate.json()["error"] == {
        "message": "A model may appear only once in a chain.",
        "type": "invalid_request_error",
        "code": "duplicate_model",
        "param": "models",
    }

    category = api(gateway, "POST", "model-mapping", {"category": "nope", "models": []}, key=staff)
    assert (category.status, category.json()["error"]["param"]) == (404, "category")

    assert chains(gateway, staff) == BUILTIN_CHAINS  # nothing changed


# --- circuit breakers ---------------------------------------------------------------------------------------


def test_it_lists_and_resets_circuit_breakers(gateway: Gateway, staff: str) -> None:
    smart = LLMModel.objects.get(provider__name="demo", name="demo-smart")
    breakers = Breakers(threshold=3, open_seconds=300, clock=lambda: 1_700_000_000.0)
    for _ in range(3):
        breakers.record_failure(smart.pk, "server_error: boom (HTTP 503)")

    listed = api(gateway, "GET", "circuit-breakers", key=staff)
    assert listed.status == 200
    assert listed.json() == {
        "circuit_breakers": [
            {
                "model": "demo/demo-fast",
                "state": "closed",
                "consecutive_failures": 0,
                "opened_at": None,
                "last_error": "",
            },
            {
                "model": "demo/demo-smart",
                "state": "open",
                "consecutive_failures": 3,
                "opened_at": 1_700_000_000.0,
                "last_error": "server_error: boom (HTTP 503)",
            },
        ]
    }

    reset = api(gateway, "POST", "circuit-breakers/demo/demo-smart/reset", key=staff)
    assert (reset.status, reset.json()) == (200, {"model": "demo/demo-smart", "state": "closed"})
    row = CircuitBreaker.objects.get(model=smart)
    assert (row.state, row.consecutive_failures, row.opened_at) == ("closed", 0, None)

    missing = api(gateway, "POST", "circuit-breakers/demo/nope/reset", key=staff)
    assert (missing.status, missing.json()["error"]["code"]) == (404, "model_not_found")


# --- who may call them --------------------------------------------------------------------------------------

STAFF_CALLS = [
    ("GET", "config", None),
    ("POST", "categories", {"name": "animals"}),
    ("DELETE", "categories/code", None),
    ("POST", "model-mapping", {"category": "code", "models": []}),
    ("GET", "circuit-breakers", None),
    ("POST", "circuit-breakers/demo/demo-smart/reset", None),
]


@pytest.mark.parametrize(("method", "path", "body"), STAFF_CALLS)
def test_a_normal_key_is_forbidden(gateway: Gateway, method: str, path: str, body: Any) -> None:
    _, raw = apikey_create(name="user")
    reply = api(gateway, method, path, body, key=raw)
    assert reply.status == 403
    assert reply.json()["error"]["type"] == "permission_error"
    assert not Category.objects.filter(name="animals").exists()


@pytest.mark.parametrize(("method", "path", "body"), STAFF_CALLS)
def test_no_key_is_unauthenticated(gateway: Gateway, method: str, path: str, body: Any) -> None:
    reply = api(gateway, method, path, body, key=None)
    assert reply.status == 401
    assert reply.json()["error"]["type"] == "authentication_error"


# --- the gateway follows the new configuration --------------------------------------------------------------


def test_a_generate_request_uses_the_new_chain(gateway: Gateway, staff: str, fake: Fake) -> None:
    assert generate(gateway, "hello")["model"] == "demo/demo-fast"
    api(
        gateway,
        "POST",
        "model-mapping",
        {"category": "conversation", "models": ["demo/demo-smart", "demo/demo-fast"]},
        key=staff,
    )
    meta = generate(gateway, "hello")
    assert (meta["category"], meta["model"]) == ("conversation", "demo/demo-smart")


def test_a_generate_request_routes_to_a_new_category_by_its_keywords(gateway: Gateway, staff: str) -> None:
    api(
        gateway,
        "POST",
        "categories",
        {"name": "animals", "keywords": ["zebra"], "models": ["demo/demo-smart"]},
        key=staff,
    )
    meta = generate(gateway, "zebra facts please")
    assert (meta["category"], meta["model"], meta["attempts"]) == (
        "animals",
        "demo/demo-smart",
        [{"model": "demo/demo-smart", "outcome": "ok"}],
    )
    api(gateway, "DELETE", "categories/animals", key=staff)
    assert generate(gateway, "zebra facts please")["category"] == "conversation"
