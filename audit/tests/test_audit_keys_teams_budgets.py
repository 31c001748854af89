"""The audit log covers the keys, teams and budgets APIs and the admin's key rotation: one entry per change,
the staff key (or admin user) that made it, the exact before/after, and never a key's secret or its hash."""

from __future__ import annotations

from typing import Any

import pytest
from auditlog.models import LogEntry
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team, hash_key
from accounts.services import apikey_create
from audit.tests.helpers import ADMIN_ACTOR, actors, admin_save, audit, log, ops_actor, stored_entries
from budgets.models import Budget

pytestmark = pytest.mark.django_db

Ops = tuple[ApiKey, APIClient]


def answer(reply: Any, status: int) -> Any:
    assert reply.status_code == status, reply.content
    return reply.json() if status != 204 else None


# --- keys -----------------------------------------------------------------------------------------------------------


def test_a_key_created_from_the_api_is_one_entry_naming_the_staff_key(ops: Ops) -> None:
    staff, client = ops
    created = answer(
        client.post(
            "/api/v1/keys", {"name": "batch", "rpm_limit": 60, "allowed_models": ["openai/*"], "tags": ["ml"]}, "json"
        ),
        201,
    )
    key = ApiKey.objects.get(name="batch")

    assert log(client) == [
        (
            "create",
            "key",
            f"batch ({key.prefix}…)",
            {
                "name": [None, "batch"],
                "prefix": [None, key.prefix],
                "is_staff": [None, False],
                "is_active": [None, True],
                "rpm_limit": [None, 60],
                "allowed_models": [None, ["openai/*"]],
                "tags": [None, ["ml"]],
            },
        )
    ]
    [entry] = audit(client)
    assert (entry["actor"], entry["object_id"]) == (ops_actor(staff), str(key.pk))
    stored = stored_entries()
    for secret in (created["key"], created["key"][len(key.prefix) :], key.hashed_key):
        assert secret not in stored


@pytest.mark.parametrize(
    ("change", "logged"),
    [
        ({"allowed_models": ["demo/*", "code"]}, {"allowed_models": [["openai/*"], ["demo/*", "code"]]}),
        ({"tags": ["ml", "nightly"]}, {"tags": [["ml"], ["ml", "nightly"]]}),
        ({"expires_at": "2030-01-31T12:00:00Z"}, {"expires_at": [None, "2030-01-31T12:00:00Z"]}),
        ({"team": "research"}, {"team": [None, "research"]}),
        ({"is_active": False}, {"is_active": [True, False]}),
        (
            {"rpm_limit": None, "max_parallel_requests": 4},
            {"rpm_limit": [60, None], "max_parallel_requests": [None, 4]},
        ),
    ],
)
def test_each_patch_of_a_key_from_the_api_is_one_entry_with_its_exact_before_and_after(
    ops: Ops, change: dict[str, Any], logged: dict[str, Any]
) -> None:
    staff, client = ops
    Team.objects.create(name="research")
    key, _ = apikey_create(name="batch", rpm_limit=60, allowed_models=["openai/*"], tags=["ml"])
    LogEntry.objects.all().delete()

    answer(client.patch(f"/api/v1/keys/{key.prefix}", change, "json"), 200)

    assert log(client) == [("update", "key", f"batch ({key.prefix}…)", logged)]
    assert actors(client) == [ops_actor(staff)]


def test_a_patch_that_changes_nothing_writes_no_entry(ops: Ops) -> None:
    _, client = ops
    key, _ = apikey_create(name="batch", tags=["ml"])
    LogEntry.objects.all().delete()
    answer(client.patch(f"/api/v1/keys/{key.prefix}", {"tags": ["ml"], "name": "batch"}, "json"), 200)
    assert log(client) == []


def test_a_rotation_from_the_api_is_one_entry_without_the_old_or_new_secret_or_hash(ops: Ops) -> None:
    staff, client = ops
    key, old_raw = apikey_create(name="batch")
    old_prefix, old_hash = key.prefix, key.hashed_key
    LogEntry.objects.all().delete()

    rotated = answer(client.post(f"/api/v1/keys/{old_prefix}/rotate", {"grace_period_seconds": 3600}, "json"), 200)

    key.refresh_from_db()
    new_raw = rotated["key"]
    assert (key.prefix, key.hashed_key, key.previous_hashed_key) == (rotated["prefix"], hash_key(new_raw), old_hash)
    assert key.previous_key_expires_at is not None
    grace_ends = key.previous_key_expires_at.isoformat().replace("+00:00", "Z")
    assert log(client) == [
        (
            "update",
            "key",
            f"batch ({key.prefix}…)",
            {"prefix": [old_prefix, key.prefix], "previous_key_expires_at": [None, grace_ends]},
        )
    ]
    assert actors(client) == [ops_actor(staff)]
    stored = stored_entries()
    for secret in (old_raw, new_raw, old_raw[len(old_prefix) :], new_raw[len(key.prefix) :], old_hash, key.hashed_key):
        assert secret not in stored
    assert "hashed_key" not in stored


def test_a_key_deleted_from_the_api_is_logged_with_the_budget_it_takes_along(ops: Ops) -> None:
    staff, client = ops
    key, _ = apikey_create(name="batch", tags=["ml"])
    budget = Budget.objects.create(scope="key", api_key=key, metric="usd", period="month", limit="50")
    LogEntry.objects.all().delete()

    answer(client.delete(f"/api/v1/keys/{key.prefix}"), 204)

    assert sorted(log(client)) == [
        (
            "delete",
            "budget",
            f"50.000000 usd per month (key {key.pk})",
            {
                "scope": ["key", None],
                "metric": ["usd", None],
                "period": ["month", None],
                "limit": ["50.000000", None],
                "soft_threshold": ["0.800", None],
                "api_key": [f"batch ({key.prefix}…)", None],
                "user_id": ["", None],
            },
        ),
        (
            "delete",
            "key",
            f"batch ({key.prefix}…)",
            {
                "name": ["batch", None],
                "prefix": [key.prefix, None],
                "is_staff": [False, None],
                "is_active": [True, None],
                "tags": [["ml"], None],
                "allowed_models": [[], None],
            },
        ),
    ]
    assert actors(client) == [ops_actor(staff)] * 2
    assert [e["object_id"] for e in audit(client, model="budget")] == [str(budget.pk)]


# --- teams ----------------------------------------------------------------------------------------------------------


def test_a_team_created_renamed_and_deleted_from_the_api(ops: Ops) -> None:
    staff, client = ops
    answer(client.post("/api/v1/teams", {"name": "ml", "rpm_limit": 100}, "json"), 201)
    team = Team.objects.get(name="ml")
    answer(client.patch("/api/v1/teams/ml", {"name": "research", "allowed_models": ["code"]}, "json"), 200)
    answer(client.patch("/api/v1/teams/research", {"rpm_limit": None, "tpm_limit": 9000}, "json"), 200)
    answer(client.delete("/api/v1/teams/research"), 204)

    assert log(client) == [
        ("create", "team", "ml", {"name": [None, "ml"], "rpm_limit": [None, 100], "allowed_models": [None, []]}),
        ("update", "team", "research", {"name": ["ml", "research"], "allowed_models": [[], ["code"]]}),
        ("update", "team", "research", {"rpm_limit": [100, None], "tpm_limit": [None, 9000]}),
        (
            "delete",
            "team",
            "research",
            {"name": ["research", None], "tpm_limit": [9000, None], "allowed_models": [["code"], None]},
        ),
    ]
    assert actors(client) == [ops_actor(staff)] * 4
    assert {e["object_id"] for e in audit(client)} == {str(team.pk)}


def test_a_team_that_may_not_be_deleted_writes_no_entry(ops: Ops) -> None:
    _, client = ops
    team = Team.objects.create(name="ml")
    apikey_create(name="member", team=team)
    LogEntry.objects.all().delete()
    assert answer(client.delete("/api/v1/teams/ml"), 409)["error"]["code"] == "team_has_keys"
    assert log(client) == []


# --- budgets --------------------------------------------------------------------------------------------------------


def test_a_budget_created_patched_and_deleted_from_the_api(ops: Ops) -> None:
    staff, client = ops
    Team.objects.create(name="research")
    LogEntry.objects.all().delete()
    body = {"scope": "team", "team": "research", "metric": "wh", "period": "day", "limit": "12.5"}
    budget_id = answer(client.post("/api/v1/budgets", body, "json"), 201)["id"]
    answer(client.patch(f"/api/v1/budgets/{budget_id}", {"limit": 20, "soft_threshold": 0.5}, "json"), 200)
    answer(client.patch(f"/api/v1/budgets/{budget_id}", {"soft_threshold": 0.9}, "json"), 200)
    answer(client.delete(f"/api/v1/budgets/{budget_id}"), 204)

    team_id = Team.objects.get(name="research").pk
    assert log(client) == [
        (
            "create",
            "budget",
            f"12.500000 wh per day (team {team_id})",
            {
                "scope": [None, "team"],
                "metric": [None, "wh"],
                "period": [None, "day"],
                "limit": [None, "12.500000"],
                "soft_threshold": [None, "0.800"],
                "team": [None, "research"],
                "user_id": [None, ""],
            },
        ),
        (
            "update",
            "budget",
            f"20.000000 wh per day (team {team_id})",
            {"limit": ["12.500000", "20.000000"], "soft_threshold": ["0.800", "0.500"]},
        ),
        ("update", "budget", f"20.000000 wh per day (team {team_id})", {"soft_threshold": ["0.500", "0.900"]}),
        (
            "delete",
            "budget",
            f"20.000000 wh per day (team {team_id})",
            {
                "scope": ["team", None],
                "metric": ["wh", None],
                "period": ["day", None],
                "limit": ["20.000000", None],
                "soft_threshold": ["0.900", None],
                "team": ["research", None],
                "user_id": ["", None],
            },
        ),
    ]
    assert actors(client) == [ops_actor(staff)] * 4
    assert {e["object_id"] for e in audit(client)} == {str(budget_id)}


def test_a_budget_refused_as_bad_input_writes_no_entry(ops: Ops) -> None:
    _, client = ops
    body = {"scope": "team", "team": "nobody", "metric": "usd", "period": "day", "limit": "5"}
    assert answer(client.post("/api/v1/budgets", body, "json"), 400)["error"]["param"] == "team"
    assert (log(client), Budget.objects.count()) == ([], 0)


def test_a_budget_added_in_the_admin_reads_as_one_from_the_api(admin_client: Client, seeded_db: None) -> None:
    key, _ = apikey_create(name="batch")
    LogEntry.objects.all().delete()
    admin_save(
        admin_client,
        "/admin/budgets/budget/add/",
        scope="user",
        metric="co2e_g",
        period="total",
        limit="50",
        soft_threshold="0.8",
        api_key=key.pk,
        user_id="u-1",
    )
    budget = Budget.objects.get()

    assert log(admin_client) == [
        (
            "create",
            "budget",
            f"50.000000 co2e_g per total (key {key.pk} user u-1)",
            {
                "scope": [None, "user"],
                "metric": [None, "co2e_g"],
                "period": [None, "total"],
                "limit": [None, "50.000000"],
                "soft_threshold": [None, "0.800"],
                "api_key": [None, f"batch ({key.prefix}…)"],
                "user_id": [None, "u-1"],
            },
        )
    ]
    assert actors(admin_client) == [ADMIN_ACTOR]
    assert audit(admin_client)[0]["object_id"] == str(budget.pk)


# --- the admin's rotate action --------------------------------------------------------------------------------------


def test_the_admin_rotate_action_is_one_entry_per_key_naming_the_admin_and_no_secret(
    admin_client: Client, seeded_db: None
) -> None:
    first, first_raw = apikey_create(name="first")
    second, second_raw = apikey_create(name="second")
    before = {first.pk: (first.prefix, first.hashed_key), second.pk: (second.prefix, second.hashed_key)}
    LogEntry.objects.all().delete()

    response = admin_client.post(
        "/admin/accounts/apikey/", {"action": "rotate", "_selected_action": [first.pk, second.pk]}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    new_raws = [m.split(": ", 1)[1].split(" ", 1)[0] for m in shown]  # "New secret for 'first': spg-… — copy it…"
    assert len(new_raws) == 2

    entries = log(admin_client)
    assert len(entries) == 2
    for key in (first, second):
        old_prefix, _ = before[key.pk]
        key.refresh_from_db()
        assert key.previous_key_expires_at is not None
        grace_ends = key.previous_key_expires_at.isoformat().replace("+00:00", "Z")
        assert (
            "update",
            "key",
            f"{key.name} ({key.prefix}…)",
            {"prefix": [old_prefix, key.prefix], "previous_key_expires_at": [None, grace_ends]},
        ) in entries
    assert actors(admin_client) == [ADMIN_ACTOR] * 2
    stored = stored_entries()
    secrets: list[str | None] = [first_raw, second_raw, *new_raws, *(h for _, h in before.values())]
    secrets += [first.hashed_key, second.hashed_key, first.previous_hashed_key, second.previous_hashed_key]
    assert sorted(hash_key(raw) for raw in new_raws) == sorted([first.hashed_key, second.hashed_key])
    for secret in secrets:
        assert secret and secret not in stored


def test_a_staff_key_that_rotates_then_deletes_itself_is_named_as_it_was_called(ops: Ops) -> None:
    staff, client = ops
    called_as = staff.prefix
    rotated = answer(client.post(f"/api/v1/keys/{called_as}/rotate", {"grace_period_seconds": 60}, "json"), 200)
    answer(client.delete(f"/api/v1/keys/{rotated['prefix']}"), 204)  # with the old secret, in its grace period

    entries = LogEntry.objects.order_by("id")
    assert [(e.action, e.additional_data["actor"]) for e in entries] == [
        (LogEntry.Action.UPDATE, ops_actor(staff)),  # the prefix it called by, which the rotation replaced
        (LogEntry.Action.DELETE, {**ops_actor(staff), "prefix": rotated["prefix"]}),  # its row is gone
    ]
    assert [e.actor.username if e.actor else None for e in entries] == ["alice", "alice"]


# --- what cascades with a team, and the admin's bulk delete ---------------------------------------------------------


def test_a_teams_budget_deleted_with_it_still_names_the_team(ops: Ops) -> None:
    _, client = ops
    team = Team.objects.create(name="ml")
    Budget.objects.create(scope="team", team=team, metric="wh", period="week", limit="3")
    LogEntry.objects.all().delete()

    answer(client.delete("/api/v1/teams/ml"), 204)

    budget_entry, team_entry = sorted(log(client))
    assert (budget_entry[:2], budget_entry[3]["team"]) == (("delete", "budget"), ["ml", None])
    assert (team_entry[:2], team_entry[3]["name"]) == (("delete", "team"), ["ml", None])


def test_budgets_deleted_together_from_the_admin_list_are_each_logged(admin_client: Client, seeded_db: None) -> None:
    team = Team.objects.create(name="ml")
    budgets = [
        Budget.objects.create(scope="team", team=team, metric=metric, period="day", limit="1")
        for metric in ("usd", "wh")
    ]
    LogEntry.objects.all().delete()
    response = admin_client.post(
        "/admin/budgets/budget/",
        {"action": "delete_selected", "_selected_action": [b.pk for b in budgets], "post": "yes"},
    )
    assert response.status_code == 302
    assert sorted((a, kind, changes["metric"]) for a, kind, _, changes in log(admin_client)) == [
        ("delete", "budget", ["usd", None]),
        ("delete", "budget", ["wh", None]),
    ]
    assert actors(admin_client) == [ADMIN_ACTOR] * 2
    assert not Budget.objects.exists()
