"""The staff budgets API: create, list, change, delete; bad input is a 400 naming its param."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team
from budgets.models import Budget
from budgets.selectors import budget_table

pytestmark = pytest.mark.django_db


def test_it_creates_lists_changes_and_deletes_a_budget(staff_client: APIClient, api_key: tuple[ApiKey, str]) -> None:
    key = api_key[0]
    body = {"scope": "key", "key": key.prefix, "metric": "usd", "period": "month", "limit": "50"}
    created = staff_client.post("/api/v1/budgets", body, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    budget_id = data["id"]
    assert {k: data[k] for k in ("scope", "metric", "period", "limit", "soft_threshold", "key", "team", "user_id")} == {
        "scope": "key",
        "metric": "usd",
        "period": "month",
        "limit": 50.0,
        "soft_threshold": 0.8,
        "key": key.prefix,
        "team": None,
        "user_id": "",
    }
    assert data["current"]["spent"] == 0 and data["current"]["reserved"] == 0 and data["current"]["remaining"] == 50
    assert budget_table.get().by_key[key.pk][0].id == budget_id  # every process's snapshot sees it

    listed = staff_client.get("/api/v1/budgets").json()["budgets"]
    assert [b["id"] for b in listed] == [budget_id]

    changed = staff_client.patch(f"/api/v1/budgets/{budget_id}", {"limit": 80, "soft_threshold": 0.5}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["limit"], changed.json()["soft_threshold"]) == (80.0, 0.5)

    assert staff_client.delete(f"/api/v1/budgets/{budget_id}").status_code == 204
    assert not Budget.objects.exists()
    assert key.pk not in budget_table.get().by_key
    assert staff_client.delete(f"/api/v1/budgets/{budget_id}").status_code == 404


def test_it_creates_team_and_end_user_budgets(staff_client: APIClient, api_key: tuple[ApiKey, str]) -> None:
    Team.objects.create(name="research")
    team = staff_client.post(
        "/api/v1/budgets",
        {"scope": "team", "team": "research", "metric": "wh", "period": "day", "limit": 12.5},
        format="json",
    )
    assert team.status_code == 201 and team.json()["team"] == "research"
    user = staff_client.post(
        "/api/v1/budgets",
        {"scope": "user", "key": api_key[0].prefix, "metric": "co2e_g", "period": "total", "limit": 3},
        format="json",
    )
    assert user.status_code == 201
    assert user.json()["current"] is None  # each end user has their own figure
    assert Budget.objects.count() == 2


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"limit": -5}, "limit", "min_value"),
        ({"limit": 0}, "limit", "min_value"),
        ({"limit": "fifty"}, "limit", "invalid"),
        ({"limit": True}, "limit", "invalid"),
        ({"scope": "galaxy"}, "scope", "invalid_choice"),
        ({"metric": "eur"}, "metric", "invalid_choice"),
        ({"period": "year"}, "period", "invalid_choice"),
        ({"key": "spg-nothere"}, "key", "unknown_key"),
        ({"scope": "team", "key": None, "team": "nobody"}, "team", "unknown_team"),
        ({"soft_threshold": 1.5}, "soft_threshold", "max_value"),
        ({"user_id": "alice"}, "user_id", "invalid"),
    ],
)
def test_it_refuses_bad_input_naming_the_param(
    staff_client: APIClient, api_key: tuple[ApiKey, str], change: dict[str, Any], param: str, code: str
) -> None:
    body = {"scope": "key", "key": api_key[0].prefix, "metric": "usd", "period": "day", "limit": 5, **change}
    body = {k: v for k, v in body.items() if v is not None}
    reply = staff_client.post("/api/v1/budgets", body, format="json")
    assert reply.status_code == 400, reply.content
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert not Budget.objects.exists()  # nothing half-stored


def test_a_non_staff_key_may_not_use_it(api_client: APIClient) -> None:
    assert api_client.get("/api/v1/budgets").status_code == 403
    assert api_client.post("/api/v1/budgets", {}, format="json").status_code == 403


def test_an_unknown_or_huge_id_is_a_404(staff_client: APIClient) -> None:
    assert staff_client.delete("/api/v1/budgets/99").status_code == 404
    assert staff_client.patch("/api/v1/budgets/99999999999999999999999", {}, format="json").status_code == 404


def test_the_admin_adds_and_bulk_deletes_budgets_that_every_process_sees(
    api_key: tuple[ApiKey, str], admin_client: Client
) -> None:
    key = api_key[0]
    form = {"scope": "key", "metric": "wh", "period": "week", "limit": "7.5", "soft_threshold": "0.8"}
    added = admin_client.post("/admin/budgets/budget/add/", {**form, "api_key": key.pk, "user_id": ""})
    assert added.status_code == 302, added.content[:2000]
    budget = Budget.objects.get()
    assert (budget.metric, budget.limit) == ("wh", Decimal("7.5"))
    assert budget_table.get().by_key[key.pk][0].id == budget.pk

    action = {"action": "delete_selected", "_selected_action": [budget.pk], "post": "yes"}
    assert admin_client.post("/admin/budgets/budget/", action).status_code == 302
    assert not Budget.objects.exists()
    assert key.pk not in budget_table.get().by_key


@pytest.mark.django_db(transaction=True)
def test_keys_me_lists_every_budget_the_key_is_under() -> None:
    from accounts.services import apikey_create
    from spignosapi.fastpath.redis_client import cache_redis

    cache_redis.sync_client().flushdb()  # no counter of an earlier test's budget with the same id
    team = Team.objects.create(name="ml")
    key, raw = apikey_create(name="me", team=team)
    mine = Budget.objects.create(scope="key", metric="usd", period="total", limit=Decimal("5"), api_key=key)
    ours = Budget.objects.create(scope="team", metric="wh", period="month", limit=Decimal("2.5"), team=team)
    Budget.objects.create(
        scope="key", metric="usd", period="day", limit=Decimal("1"), api_key=apikey_create(name="x")[0]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    budgets = sorted(client.get("/api/v1/keys/me").json()["budgets"], key=lambda b: b["id"])

    assert [{k: v for k, v in b.items() if k != "resets_at"} for b in budgets] == [
        {
            "id": mine.pk,
            "scope": "key",
            "metric": "usd",
            "period": "total",
            "limit": 5.0,
            "spent": 0.0,
            "reserved": 0.0,
            "remaining": 5.0,
        },
        {
            "id": ours.pk,
            "scope": "team",
            "metric": "wh",
            "period": "month",
            "limit": 2.5,
            "spent": 0.0,
            "reserved": 0.0,
            "remaining": 2.5,
        },
    ]
    assert budgets[0]["resets_at"] is None  # a total budget never resets
    now = datetime.now(UTC)  # a month budget resets at the start of the next UTC month
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert datetime.fromisoformat(budgets[1]["resets_at"]) == next_month
