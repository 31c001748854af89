"""Allow-lists, team limits and parallel requests, enforced on every door over real HTTP (contract section 3).

The gateway reads them from the in-memory key table; the team's requests and tokens per minute and the
key's parallel-request slots are counted in Redis, shared by every process.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from accounts.models import Team
from accounts.selectors import key_info_by_id
from accounts.services import apikey_create
from routing import limits
from routing.errors import GatewayError
from tests.fixtures import Fake, Gateway, _stop, start_gateway
from tests.helpers import wait_until
from tests.http import Reply, call

pytestmark = pytest.mark.django_db(transaction=True)


def chat(gateway: Gateway, key: str, model: str, **extra: Any) -> Reply:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return call("POST", gateway.url + "/v1/chat/completions", body, key=key)


def not_allowed(model: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"This API key may not use the model {model!r}.",
            "type": "permission_error",
            "code": "model_not_allowed",
            "param": "model",
        }
    }


def test_a_model_the_key_may_not_use_is_a_403_on_every_door_in_its_own_envelope(gateway: Gateway, seeded: Fake) -> None:
    _, key = apikey_create(name="smart-only", allowed_models=["demo/demo-smart"])
    url = gateway.url
    fast = "demo/demo-fast"
    openai_style = [
        ("/v1/chat/completions", {"model": fast, "messages": [{"role": "user", "content": "hi"}]}),
        ("/chat/completions", {"model": fast, "messages": [{"role": "user", "content": "hi"}]}),
        ("/api/v1/generate", {"prompt": "hi", "model": fast}),
        ("/api/v1/generate", {"prompt": "hi", "model": fast, "stream": True}),
        ("/api/v1/generate/async", {"prompt": "hi", "model": fast}),
        ("/v1/responses", {"model": fast, "input": "hi"}),
        ("/v1/embeddings", {"model": "demo/demo-embed", "input": "hi"}),
        ("/api/v1/embeddings", {"model": "demo/demo-embed", "input": "hi"}),
    ]
    for path, body in openai_style:
        reply = call("POST", url + path, body, key=key)
        expected = not_allowed("demo/demo-embed" if "embed" in str(body) else fast)
        assert (reply.status, reply.json()) == (403, expected), path

    messages = {"model": fast, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        reply = call("POST", url + path, messages, headers={"x-api-key": key, "anthropic-version": "2023-06-01"})
        assert reply.status == 403, path
        body = reply.json()
        assert body.pop("request_id") == reply.headers["x-request-id"]
        assert body == {
            "type": "error",
            "error": {"type": "permission_error", "message": "This API key may not use the model 'demo/demo-fast'."},
        }

    assert chat(gateway, key, "demo/demo-smart").status == 200
    assert seeded.stats()["requests"] == {"demo-smart": 1}  # nothing refused reached a model


@pytest.mark.parametrize("pattern", ["demo/demo-smart", "demo/*-smart", "demo/demo-s?art"])
def test_a_routed_request_walks_only_the_allowed_models_of_its_chain(
    gateway: Gateway, seeded: Fake, pattern: str
) -> None:
    _, key = apikey_create(name="smart-only", allowed_models=[pattern])
    # conversation's chain is demo-fast, then demo-smart: the key skips demo-fast.
    for model in ("conversation", "router"):
        reply = chat(gateway, key, model)
        assert (reply.status, reply.json()["model"]) == (200, "demo/demo-smart"), model
    assert seeded.stats()["requests"] == {"demo-smart": 2}


def test_a_category_name_allows_the_models_of_its_chain(gateway: Gateway, seeded: Fake) -> None:
    _, key = apikey_create(name="code-only", allowed_models=["code"])
    assert chat(gateway, key, "demo/demo-fast").status == 200  # in code's chain
    embeddings = call("POST", gateway.url + "/v1/embeddings", {"model": "demo/demo-embed", "input": "x"}, key=key)
    assert (embeddings.status, embeddings.json()) == (403, not_allowed("demo/demo-embed"))


def test_a_key_of_a_team_must_pass_both_lists(gateway: Gateway, seeded: Fake) -> None:
    team = Team.objects.create(name="research", allowed_models=["demo/demo-smart"])
    _, inherits = apikey_create(name="inherits", team=team)
    _, disjoint = apikey_create(name="disjoint", team=team, allowed_models=["demo/demo-fast"])

    assert chat(gateway, inherits, "conversation").json()["model"] == "demo/demo-smart"
    assert chat(gateway, inherits, "demo/demo-fast").json() == not_allowed("demo/demo-fast")
    refused = chat(gateway, disjoint, "conversation")
    assert (refused.status, refused.json()["error"]["code"]) == (403, "model_not_allowed")
    assert refused.json()["error"]["message"] == (
        "This API key may use none of the models of the category 'conversation'."
    )
    assert seeded.stats()["requests"] == {"demo-smart": 1}


def test_a_teams_requests_per_minute_are_shared_by_its_keys(gateway: Gateway, seeded: Fake) -> None:
    team = Team.objects.create(name="small", rpm_limit=2)
    _, first = apikey_create(name="a", team=team)
    _, second = apikey_create(name="b", team=team)
    _, elsewhere = apikey_create(name="c")

    assert chat(gateway, first, "demo/demo-fast").status == 200
    assert chat(gateway, second, "demo/demo-fast").status == 200
    refused = chat(gateway, first, "demo/demo-fast")

    assert refused.status == 429
    assert refused.json()["error"] == {
        "message": "Rate limit reached: 2 requests per minute for the team 'small'.",
        "type": "rate_limit_error",
        "code": "rpm_limit_exceeded",
        "param": None,
    }
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert chat(gateway, elsewhere, "demo/demo-fast").status == 200  # another team's minute is its own
    assert seeded.stats()["requests"] == {"demo-fast": 3}


def test_a_teams_tokens_per_minute_are_shared_by_its_keys(gateway: Gateway, seeded: Fake) -> None:
    team = Team.objects.create(name="thrifty", tpm_limit=100)
    _, first = apikey_create(name="a", team=team)
    _, second = apikey_create(name="b", team=team)
    _, alone = apikey_create(name="alone", team=Team.objects.create(name="roomy", tpm_limit=100))

    spent = chat(gateway, first, "demo/demo-fast", max_tokens=50)
    assert spent.status == 200 and spent.json()["usage"]["total_tokens"] > 12  # some of the minute is spent
    # Alone, this call fits its team's minute (its prompt and 80 tokens); after the other key's, it does not.
    assert chat(gateway, alone, "demo/demo-fast", max_tokens=80).status == 200
    refused = chat(gateway, second, "demo/demo-fast", max_tokens=80)

    assert refused.status == 429
    assert refused.json()["error"]["code"] == "tpm_limit_exceeded"
    assert refused.json()["error"]["message"] == "Token limit reached: 100 tokens per minute for its team."


def test_a_key_over_its_parallel_requests_gets_a_429_from_any_process_until_one_ends(
    gateway: Gateway, seeded: Fake
) -> None:
    _, key = apikey_create(name="one-at-a-time", max_parallel_requests=1)
    seeded.configure(**{"demo-fast": {"latency_ms": 1500}})
    other = start_gateway()  # a second web process: the slots are shared through Redis
    replies: list[Reply] = []
    holder = threading.Thread(target=lambda: replies.append(chat(gateway, key, "demo/demo-fast")))
    holder.start()
    try:
        assert wait_until(lambda: seeded.stats()["requests"] == {"demo-fast": 1})

        refused = chat(other, key, "demo/demo-fast")

        assert refused.status == 429
        assert refused.json()["error"] == {
            "message": "Too many requests at once: this key may have 1 under way.",
            "type": "rate_limit_error",
            "code": "parallel_limit_exceeded",
            "param": None,
        }
        assert refused.headers["retry-after"] == "1"
        holder.join()
        assert replies[0].status == 200
        seeded.configure(**{"demo-fast": {}})
        # The slot was given back when the call was booked (just after its answer left: hence the wait).
        assert wait_until(lambda: chat(other, key, "demo/demo-fast").status == 200, timeout=10)
    finally:
        holder.join()
        _stop(other.proc)
    assert seeded.stats()["requests"] == {"demo-fast": 2}


def test_a_slot_never_given_back_lapses_with_its_lease(gateway: Gateway, settings: Any) -> None:
    # A process killed mid-call never gives its slot back: its lease ends it.
    settings.KEY_PARALLEL_LEASE_S = 30
    key, _ = apikey_create(name="k", max_parallel_requests=1)
    info = key_info_by_id(key.pk)
    assert info is not None

    async def admit(at: float) -> limits.Admitted:
        return await limits.admit_key(info, prompt_tokens=1, max_tokens=1, clock=lambda: at)

    async def scenario() -> list[str]:
        outcomes = []
        held = await admit(1000.0)  # never released
        assert held.slot is not None
        for at in (1010.0, 1029.9, 1030.0):
            try:
                await admit(at)
                outcomes.append("admitted")
            except GatewayError as exc:
                outcomes.append(exc.code)
        return outcomes

    assert asyncio.run(scenario()) == ["parallel_limit_exceeded", "parallel_limit_exceeded", "admitted"]


def test_the_models_list_shows_only_what_leads_to_an_allowed_model(gateway: Gateway) -> None:
    _, key = apikey_create(name="smart-only", allowed_models=["demo/demo-smart"])

    listed = call("GET", gateway.url + "/v1/models", key=key)
    refused = call("GET", gateway.url + "/v1/models/demo/demo-fast", key=key)

    # Every seeded category's chain holds demo-smart; demo-fast and the embedding model are not for this key.
    assert [entry["id"] for entry in listed.json()["data"]] == [
        "router",
        "auto",
        "code",
        "conversation",
        "reasoning",
        "tools",
        "demo/demo-smart",
    ]
    assert (refused.status, refused.json()) == (403, not_allowed("demo/demo-fast"))
    assert call("GET", gateway.url + "/v1/models/demo/demo-smart", key=key).json()["id"] == "demo/demo-smart"
