"""The audit log: every staff change from the API and the admin, with its actor and exact before/after,
never a secret; ``GET /api/v1/audit`` (staff only, filtered, paginated) and the read-only admin page."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team
from accounts.services import apikey_create
from audit.registry import AUDITED, Audited, register_all, secret_fields_logged
from audit.tests.helpers import ADMIN_ACTOR, actors, admin_save, audit, log, ops_actor
from energy.models import EnergyCoefficient
from routing.breaker import Breakers
from routing.models import Category, ChainEntry, CircuitBreaker, LLMModel, ModelAlias, Provider
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db


def post(client: APIClient, path: str, body: Any = None) -> Any:
    reply = client.post(f"/api/v1/routing/{path}", body, format="json")
    assert reply.status_code in (200, 201), reply.content
    return reply


def open_breaker(model: LLMModel) -> None:
    breakers = Breakers(threshold=3, open_seconds=300, clock=lambda: 1000.0)
    for _ in range(3):
        breakers.record_failure(model.pk, "HTTP 503")


# --- from the API, with a staff key ------------------------------------------------------------------------------


def test_a_category_created_from_the_api_is_logged_with_its_chain_and_the_key_as_actor(
    ops: tuple[ApiKey, APIClient],
) -> None:
    _, client = ops
    post(client, "categories", {"name": "animals", "keywords": ["Zebra"], "models": ["demo/demo-fast"]})

    assert log(client) == [
        (
            "create",
            "category",
            "animals",
            {
                "name": [None, "animals"],
                "description": [None, ""],
                "keywords": [None, ["zebra"]],
                "examples": [None, []],
                "builtin": [None, False],
                "strategy": [None, "ordered"],
            },
        ),
        (
            "create",
            "chain_entry",
            "animals#0: demo/demo-fast",
            {"category": [None, "animals"], "model": [None, "demo/demo-fast"], "position": [None, 0]},
        ),
    ]
    assert actors(client) == [ops_actor(ops[0])] * 2
    [entry] = audit(client, model="category")
    category = Category.objects.get(name="animals")
    assert (entry["object_id"], entry["id"]) == (str(category.pk), LogEntry.objects.get(object_repr="animals").pk)
    assert LogEntry.objects.get(pk=entry["id"]).actor.username == "alice"  # the key's owner, as the entry's user


def test_a_chain_rewritten_from_the_api_logs_each_move_removal_and_addition(ops: tuple[ApiKey, APIClient]) -> None:
    _, client = ops
    post(client, "categories", {"name": "animals", "models": ["demo/demo-fast", "demo/demo-smart"]})
    LogEntry.objects.all().delete()

    post(client, "model-mapping", {"category": "animals", "models": ["demo/demo-smart", "demo/demo-embed"]})

    assert log(client) == [
        (
            "delete",
            "chain_entry",
            "animals#0: demo/demo-fast",
            {"category": ["animals", None], "model": ["demo/demo-fast", None], "position": [0, None]},
        ),
        ("update", "chain_entry", "animals#0: demo/demo-smart", {"position": [1, 0]}),
        (
            "create",
            "chain_entry",
            "animals#1: demo/demo-embed",
            {"category": [None, "animals"], "model": [None, "demo/demo-embed"], "position": [None, 1]},
        ),
    ]
    assert [e.model.model_id for e in ChainEntry.objects.filter(category__name="animals").order_by("position")] == [
        "demo/demo-smart",
        "demo/demo-embed",
    ]


def test_a_category_updated_then_deleted_from_the_api(ops: tuple[ApiKey, APIClient]) -> None:
    _, client = ops
    post(client, "categories", {"name": "animals", "keywords": ["zebra"]})
    LogEntry.objects.all().delete()

    post(client, "categories", {"name": "animals", "description": "Zoo", "keywords": ["zebra", "lion"]})
    assert client.delete("/api/v1/routing/categories/animals").status_code == 204

    assert log(client) == [
        ("update", "category", "animals", {"description": ["", "Zoo"], "keywords": [["zebra"], ["lion", "zebra"]]}),
        (
            "delete",
            "category",
            "animals",
            {
                "name": ["animals", None],
                "description": ["Zoo", None],
                "keywords": [["lion", "zebra"], None],
                "examples": [[], None],
                "builtin": [False, None],
                "strategy": ["ordered", None],
            },
        ),
    ]


def test_an_alias_created_retargeted_and_deleted_from_the_api(ops: tuple[ApiKey, APIClient]) -> None:
    _, client = ops
    post(client, "aliases", {"name": "gpt-4o", "target": "code"})
    post(client, "aliases", {"name": "gpt-4o", "target": "demo/demo-fast"})
    assert client.delete("/api/v1/routing/aliases/gpt-4o").status_code == 204

    assert log(client) == [
        ("create", "alias", "gpt-4o → code", {"name": [None, "gpt-4o"], "category": [None, "code"]}),
        ("update", "alias", "gpt-4o → demo/demo-fast", {"category": ["code", None], "model": [None, "demo/demo-fast"]}),
        ("delete", "alias", "gpt-4o → demo/demo-fast", {"name": ["gpt-4o", None], "model": ["demo/demo-fast", None]}),
    ]
    assert actors(client) == [ops_actor(ops[0])] * 3


def test_a_breaker_reset_from_the_api_is_one_reset_entry_and_traffic_makes_none(
    ops: tuple[ApiKey, APIClient],
) -> None:
    _, client = ops
    smart = LLMModel.objects.get(provider__name="demo", name="demo-smart")
    open_breaker(smart)
    assert LogEntry.objects.count() == 0  # the breaker's transitions under traffic are nobody's change

    post(client, "circuit-breakers/demo/demo-smart/reset")

    breaker = CircuitBreaker.objects.get(model=smart)
    [entry] = audit(client, model="circuit_breaker")
    assert {k: entry[k] for k in ("action", "object_type", "object_id", "object_repr", "actor", "changes")} == {
        "action": "reset",
        "object_type": "circuit_breaker",
        "object_id": str(breaker.pk),
        "object_repr": "demo/demo-smart",
        "actor": ops_actor(ops[0]),
        "changes": {
            "state": ["open", "closed"],
            "consecutive_failures": [3, 0],
            "opened_at": [1000.0, None],
            "last_error": ["HTTP 503", ""],
        },
    }
    assert breaker.state == CircuitBreaker.State.CLOSED


# --- from the admin, logged in as a staff user -----------------------------------------------------------------


def test_a_key_added_and_changed_in_the_admin_is_logged_without_its_secret(
    admin_client: Client, seeded_db: None
) -> None:
    team = Team.objects.create(name="research")
    LogEntry.objects.all().delete()
    admin_save(admin_client, "/admin/accounts/apikey/add/", name="batch", rpm_limit=60, is_active=True)
    key = ApiKey.objects.get(name="batch")
    admin_save(admin_client, f"/admin/accounts/apikey/{key.pk}/change/", rpm_limit=120, team=team.pk)

    assert log(admin_client) == [
        (
            "create",
            "key",
            str(key),
            {
                "name": [None, "batch"],
                "prefix": [None, key.prefix],
                "is_staff": [None, False],
                "is_active": [None, True],
                "rpm_limit": [None, 60],
                "tags": [None, []],
                "allowed_models": [None, []],
            },
        ),
        ("update", "key", str(key), {"rpm_limit": [60, 120], "team": [None, "research"]}),
    ]
    assert actors(admin_client) == [ADMIN_ACTOR, ADMIN_ACTOR]
    stored = json.dumps(list(LogEntry.objects.values()), default=str)
    assert key.hashed_key not in stored
    assert "hashed_key" not in stored


def test_the_raw_key_and_its_hash_appear_in_no_entry(ops: tuple[ApiKey, APIClient]) -> None:
    key, raw = apikey_create(name="secret holder", is_staff=False)
    key.rpm_limit = 5
    key.save()
    key.delete()
    stored = json.dumps(list(LogEntry.objects.values()), default=str)
    assert [e["action"] for e in audit(ops[1], model="key")] == ["delete", "update", "create"]
    for secret in (raw, raw[len(key.prefix) :], key.hashed_key):
        assert secret not in stored


def test_a_team_added_and_renamed_in_the_admin(admin_client: Client, seeded_db: None) -> None:
    admin_save(admin_client, "/admin/accounts/team/add/", name="ml")
    team = Team.objects.get(name="ml")
    admin_save(admin_client, f"/admin/accounts/team/{team.pk}/change/", name="research")
    assert log(admin_client, model="team", object=str(team.pk)) == [
        ("create", "team", "ml", {"name": [None, "ml"], "allowed_models": [None, []]}),
        ("update", "team", "research", {"name": ["ml", "research"]}),
    ]


def test_a_provider_and_a_model_price_changed_in_the_admin(admin_client: Client, seeded_db: None) -> None:
    demo = Provider.objects.get(name="demo")
    admin_save(admin_client, f"/admin/routing/provider/{demo.pk}/change/", timeout_s=60, drop_params=True)
    fast = LLMModel.objects.get(provider=demo, name="demo-fast")
    before = str(fast.price_in_per_m)
    admin_save(admin_client, f"/admin/routing/llmmodel/{fast.pk}/change/", price_in_per_m="0.25")
    assert log(admin_client) == [
        ("update", "provider", "demo", {"timeout_s": [300.0, 60.0], "drop_params": [False, True]}),
        ("update", "model", "demo/demo-fast", {"price_in_per_m": [before, "0.25"]}),
    ]
    assert actors(admin_client) == [ADMIN_ACTOR, ADMIN_ACTOR]


def test_a_category_and_its_chain_changed_from_the_category_page(admin_client: Client, seeded_db: None) -> None:
    code = Category.objects.get(name="code")
    url = f"/admin/routing/category/{code.pk}/change/"
    data = admin_form_data(admin_client.get(url))
    data["chain-0-position"], data["chain-1-position"] = 1, 0
    data["description"] = "Programming"
    assert admin_client.post(url, data).status_code == 302
    assert log(admin_client) == [
        ("update", "category", "code", {"description": [code.description, "Programming"]}),
        ("update", "chain_entry", "code#1: demo/demo-smart", {"position": [0, 1]}),
        ("update", "chain_entry", "code#0: demo/demo-fast", {"position": [1, 0]}),
    ]


def test_an_energy_coefficient_corrected_in_the_admin(admin_client: Client, seeded_db: None) -> None:
    row = EnergyCoefficient.objects.create(
        model="demo/demo-fast", output_kwh_per_m_low=0.1, output_kwh_per_m=0.2, output_kwh_per_m_high=0.3, source="a"
    )
    [created] = audit(admin_client, model="energy_coefficient")
    assert (created["action"], created["actor"]) == ("create", None)  # made outside any request: no actor
    # A date-time reads as ISO 8601 in UTC.
    assert created["changes"]["valid_from"] == [None, row.valid_from.isoformat().replace("+00:00", "Z")]
    admin_save(admin_client, f"/admin/energy/energycoefficient/{row.pk}/change/", source="IEA 2026", notes="typo")
    [entry, _] = audit(admin_client, model="energy_coefficient")
    assert (entry["action"], entry["actor"], entry["changes"]) == (
        "update",
        ADMIN_ACTOR,
        {"source": ["a", "IEA 2026"], "notes": ["", "typo"]},
    )


def test_a_breaker_reset_from_the_admin_action(admin_client: Client, seeded_db: None) -> None:
    smart = LLMModel.objects.get(provider__name="demo", name="demo-smart")
    open_breaker(smart)
    breaker = CircuitBreaker.objects.get(model=smart)
    response = admin_client.post(
        "/admin/routing/circuitbreaker/", {"action": "reset_breakers", "_selected_action": [breaker.pk]}
    )
    assert response.status_code == 302
    [entry] = audit(admin_client)
    assert (entry["action"], entry["object_repr"], entry["actor"], entry["changes"]["state"]) == (
        "reset",
        "demo/demo-smart",
        ADMIN_ACTOR,
        ["open", "closed"],
    )


def test_aliases_deleted_together_from_the_admin_list_are_each_logged(admin_client: Client, seeded_db: None) -> None:
    code = Category.objects.get(name="code")
    aliases = [ModelAlias.objects.create(name=name, category=code) for name in ("gpt-4o", "sonnet")]
    LogEntry.objects.all().delete()
    response = admin_client.post(
        "/admin/routing/modelalias/",
        {"action": "delete_selected", "_selected_action": [a.pk for a in aliases], "post": "yes"},
    )
    assert response.status_code == 302
    assert sorted(log(admin_client)) == [
        ("delete", "alias", "gpt-4o → code", {"name": ["gpt-4o", None], "category": ["code", None]}),
        ("delete", "alias", "sonnet → code", {"name": ["sonnet", None], "category": ["code", None]}),
    ]
    assert actors(admin_client) == [ADMIN_ACTOR, ADMIN_ACTOR]


def test_the_admin_shows_the_log_read_only(admin_client: Client, ops: tuple[ApiKey, APIClient]) -> None:
    key, client = ops
    post(client, "aliases", {"name": "gpt-4o", "target": "code"})
    entry = LogEntry.objects.get()
    page = admin_client.get("/admin/auditlog/logentry/")
    assert page.status_code == 200
    assert f"key ops ({key.prefix}…, owner alice)" in page.content.decode()
    assert admin_client.get(f"/admin/auditlog/logentry/{entry.pk}/change/").status_code == 200  # the view page
    assert admin_client.get("/admin/auditlog/logentry/add/").status_code == 403
    assert admin_client.post(f"/admin/auditlog/logentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LogEntry.objects.filter(pk=entry.pk).exists()


# --- GET /api/v1/audit -----------------------------------------------------------------------------------------------


def test_only_staff_may_read_the_log(seeded_db: None, admin_client: Client) -> None:
    assert APIClient().get("/api/v1/audit").status_code == 401
    _, raw = apikey_create(name="app")
    user = APIClient()
    user.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    reply = user.get("/api/v1/audit")
    assert reply.status_code == 403
    assert reply.json()["error"]["message"] == "This endpoint requires a staff API key."
    assert admin_client.get("/api/v1/audit").status_code == 200  # a staff session


def test_the_log_filters_by_type_object_actor_and_time(ops: tuple[ApiKey, APIClient], admin_client: Client) -> None:
    key, client = ops
    post(client, "aliases", {"name": "gpt-4o", "target": "code"})
    post(client, "aliases", {"name": "sonnet", "target": "code"})
    admin_save(admin_client, "/admin/accounts/team/add/", name="ml")
    alias_id = audit(client, model="alias")[0]["object_id"]
    first = LogEntry.objects.order_by("id").first()
    assert first is not None
    LogEntry.objects.filter(pk=first.pk).update(timestamp=datetime(2026, 1, 1, tzinfo=UTC))

    def reprs(**params: Any) -> list[str]:
        return [e["object_repr"] for e in audit(client, **params)]

    assert reprs() == ["ml", "sonnet → code", "gpt-4o → code"]
    assert reprs(model="alias") == ["sonnet → code", "gpt-4o → code"]
    assert reprs(model="alias", object=alias_id) == ["sonnet → code"]
    assert reprs(model="team") == ["ml"]
    for who in ("ops", key.prefix, "alice"):
        assert reprs(actor=who) == ["sonnet → code", "gpt-4o → code"]
    assert reprs(actor="admin") == ["ml"]
    assert reprs(actor="nobody") == []
    assert reprs(since="2026-01-02T00:00:00Z") == ["ml", "sonnet → code"]
    assert reprs(until="2026-01-02T00:00:00Z") == ["gpt-4o → code"]
    assert reprs(since="2026-01-01T00:00:00Z", until="2026-01-01T00:00:00.000001Z") == ["gpt-4o → code"]

    page = client.get("/api/v1/audit", {"page_size": 2}).json()
    assert (page["count"], [e["object_repr"] for e in page["results"]]) == (3, ["ml", "sonnet → code"])
    assert page["next"].endswith("page=2&page_size=2") and page["previous"] is None


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"model": "budgetz"}, "model"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"object": "x" * 256}, "object"),
    ],
)
def test_bad_filters_are_a_400_naming_the_parameter(
    ops: tuple[ApiKey, APIClient], params: dict[str, str], param: str
) -> None:
    reply = ops[1].get("/api/v1/audit", params)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == param


# --- the registry -------------------------------------------------------------------------------------------------


def test_every_audited_model_leaves_its_secret_looking_fields_out(db: None) -> None:
    assert [(entry.model, secret_fields_logged(entry)) for entry in AUDITED if secret_fields_logged(entry)] == []
    careless = Audited("accounts.ApiKey", "key")
    assert secret_fields_logged(careless) == ["hashed_key", "previous_hashed_key"]


def test_start_up_refuses_a_registry_that_would_log_a_secret(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audit.registry.AUDITED", (Audited("accounts.ApiKey", "key"),))
    with pytest.raises(ImproperlyConfigured, match="accounts.ApiKey has hashed_key"):
        register_all()


def test_a_change_outside_any_request_has_no_actor(seeded_db: None, admin_client: Client) -> None:
    Team.objects.create(name="cli")
    [entry] = audit(admin_client)
    assert (entry["actor"], entry["action"], entry["changes"]) == (
        None,
        "create",
        {"name": [None, "cli"], "allowed_models": [None, []]},
    )
    assert datetime.fromisoformat(entry["at"]) == LogEntry.objects.get().timestamp
