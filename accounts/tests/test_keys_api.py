"""The keys and teams API: ``/api/v1/keys/me``, the staff CRUD, rotation with its grace period, and the 401s
of disabled and expired keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team, hash_key
from accounts.services import apikey_create

pytestmark = pytest.mark.django_db

StaffClient = APIClient


def client(raw: str) -> APIClient:
    made = APIClient()
    made.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return made


@pytest.fixture
def staff() -> APIClient:
    return client(apikey_create(name="staff", is_staff=True)[1])


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


def test_keys_me_describes_the_calling_key_with_its_teams_tighter_limits() -> None:
    team = Team.objects.create(
        name="research", rpm_limit=100, tpm_limit=9000, max_tokens_cap=500, max_parallel_requests=4,
        allowed_models=["demo/*"],
    )  # fmt: skip
    expires = timezone.now() + timedelta(days=3)
    key, raw = apikey_create(
        name="alice", team=team, max_tokens_cap=800, max_parallel_requests=2, allowed_models=["code"],
        tags=["ci", "eu"], expires_at=expires,
    )  # fmt: skip

    response = client(raw).get("/api/v1/keys/me")

    assert response.status_code == 200
    assert response.json() == {
        "name": "alice",
        "prefix": key.prefix,
        "team": "research",
        "is_staff": False,
        "limits": {
            "rpm_limit": 100,  # the team's: the key sets none
            "tpm_limit": 9000,
            "max_tokens_cap": 500,  # the team's, tighter than the key's 800
            "max_prompt_tokens": 128_000,  # neither sets one: the default
            "max_parallel_requests": 2,  # the key's, tighter than the team's 4
            "team_rpm_limit": 100,
            "team_tpm_limit": 9000,
        },
        "allowed_models": ["code"],
        "team_allowed_models": ["demo/*"],
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
        "tags": ["ci", "eu"],
        "budgets": [],
    }


def test_a_disabled_and_an_expired_key_get_their_own_401() -> None:
    disabled, raw_disabled = apikey_create(name="off", is_active=False)
    expired, raw_expired = apikey_create(name="old")
    expired.expires_at = timezone.now() - timedelta(seconds=1)
    expired.save()

    assert client(raw_disabled).get("/api/v1/keys/me").status_code == 401
    assert error(client(raw_disabled).get("/api/v1/keys/me"))["code"] == "key_disabled"
    assert error(client(raw_expired).get("/api/v1/keys/me")) == {
        "message": "This API key has expired.",
        "type": "authentication_error",
        "code": "key_expired",
        "param": None,
    }
    assert error(client("spg-not-a-key-at-all").get("/api/v1/keys/me"))["code"] == "invalid_api_key"


def test_staff_create_a_key_and_see_its_secret_only_in_that_answer(staff: APIClient) -> None:
    Team.objects.create(name="ops")
    body = {
        "name": "deploy-bot",
        "team": "ops",
        "allowed_models": ["openai/*", "code", "demo/demo-fast"],
        "tags": ["ci"],
        "max_parallel_requests": 3,
        "rpm_limit": 30,
    }

    created = staff.post("/api/v1/keys", body, format="json")

    assert created.status_code == 201
    data = created.json()
    raw = data.pop("key")
    key = ApiKey.objects.get(name="deploy-bot")
    assert key.hashed_key == hash_key(raw) and data["prefix"] == raw[:12] == key.prefix
    assert {k: data[k] for k in ("team", "allowed_models", "tags", "max_parallel_requests", "rpm_limit")} == {
        "team": "ops",
        "allowed_models": ["openai/*", "code", "demo/demo-fast"],
        "tags": ["ci"],
        "max_parallel_requests": 3,
        "rpm_limit": 30,
    }
    assert (data["is_active"], data["expired"], data["expires_at"]) == (True, False, None)
    listed = staff.get("/api/v1/keys")
    detail = staff.get(f"/api/v1/keys/{key.prefix}")
    assert raw not in listed.content.decode() and raw not in detail.content.decode()
    assert key.hashed_key not in listed.content.decode() and key.hashed_key not in detail.content.decode()
    assert [row["name"] for row in listed.json()["results"]] == ["deploy-bot", "staff"]
    assert detail.json() == {**data, "previous_key_expires_at": None}
    assert client(raw).get("/api/v1/keys/me").json()["team"] == "ops"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"name": "k", "team": "nope"}, "team", "does_not_exist"),
        ({"name": "k", "allowed_models": ["openai/[abc]"]}, "allowed_models", "invalid"),
        ({"name": "k", "allowed_models": ["has space"]}, "allowed_models", "invalid"),
        ({"name": "k", "allowed_models": "openai/*"}, "allowed_models", "not_a_list"),
        ({"name": "k", "tags": ["a,b"]}, "tags", "invalid"),
        ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at", "in_the_past"),
        ({"name": "k", "rpm_limit": -5}, "rpm_limit", "min_value"),
        ({"name": "k", "max_parallel_requests": 0}, "max_parallel_requests", "min_value"),
        ({"name": "k", "tpm_limit": "lots"}, "tpm_limit", "invalid"),
        ({}, "name", "required"),
    ],
)
def test_bad_key_input_is_a_400_naming_the_param(staff: APIClient, body: dict[str, Any], param: str, code: str) -> None:
    response = staff.post("/api/v1/keys", body, format="json")

    assert response.status_code == 400
    assert (error(response)["param"], error(response)["code"]) == (param, code)
    assert list(ApiKey.objects.values_list("name", flat=True)) == ["staff"]


def test_patch_disables_a_key_at_once(staff: APIClient) -> None:
    key, raw = apikey_create(name="k")
    assert client(raw).get("/api/v1/keys/me").status_code == 200

    response = staff.patch(f"/api/v1/keys/{key.prefix}", {"is_active": False, "tags": ["paused"]}, format="json")

    assert response.status_code == 200
    assert (response.json()["is_active"], response.json()["tags"]) == (False, ["paused"])
    assert error(client(raw).get("/api/v1/keys/me"))["code"] == "key_disabled"


def test_rotation_returns_a_new_secret_and_keeps_the_old_one_for_the_grace_period(staff: APIClient) -> None:
    key, old = apikey_create(name="k")

    response = staff.post(f"/api/v1/keys/{key.prefix}/rotate", {"grace_period_seconds": 3600}, format="json")

    assert response.status_code == 200
    new = response.json()["key"]
    key.refresh_from_db()
    assert new != old and key.hashed_key == hash_key(new) and key.prefix == new[:12] == response.json()["prefix"]
    assert key.previous_key_expires_at is not None
    assert timedelta(seconds=3590) < key.previous_key_expires_at - timezone.now() <= timedelta(seconds=3600)
    assert client(new).get("/api/v1/keys/me").status_code == 200
    assert client(old).get("/api/v1/keys/me").json()["prefix"] == key.prefix  # the same key, in its grace
    assert new not in staff.get(f"/api/v1/keys/{key.prefix}").content.decode()

    # The grace period ends: the old secret stops, the new one goes on.
    key.previous_key_expires_at = timezone.now() - timedelta(seconds=1)
    key.save()
    assert error(client(old).get("/api/v1/keys/me"))["code"] == "key_expired"
    assert client(new).get("/api/v1/keys/me").status_code == 200


def test_rotation_with_no_grace_stops_the_old_secret_now(staff: APIClient, settings: Any) -> None:
    settings.KEY_ROTATION_GRACE_S = 0
    key, old = apikey_create(name="k")

    response = staff.post(f"/api/v1/keys/{key.prefix}/rotate", {}, format="json")

    assert response.status_code == 200 and response.json()["previous_key_expires_at"] is None
    assert error(client(old).get("/api/v1/keys/me"))["code"] == "invalid_api_key"
    assert client(response.json()["key"]).get("/api/v1/keys/me").status_code == 200


def test_rotation_refuses_a_negative_grace_period(staff: APIClient) -> None:
    key, old = apikey_create(name="k")
    response = staff.post(f"/api/v1/keys/{key.prefix}/rotate", {"grace_period_seconds": -1}, format="json")
    assert response.status_code == 400 and error(response)["param"] == "grace_period_seconds"
    assert ApiKey.objects.get(pk=key.pk).hashed_key == hash_key(old)


def test_delete_a_key_and_404_an_unknown_one(staff: APIClient) -> None:
    key, raw = apikey_create(name="k")
    assert staff.delete(f"/api/v1/keys/{key.prefix}").status_code == 204
    assert not ApiKey.objects.filter(pk=key.pk).exists()
    assert error(client(raw).get("/api/v1/keys/me"))["code"] == "invalid_api_key"
    assert staff.get(f"/api/v1/keys/{key.prefix}").status_code == 404
    assert error(staff.delete(f"/api/v1/keys/{key.prefix}"))["code"] == "not_found"


def test_teams_crud_and_a_team_with_keys_is_a_409_on_delete(staff: APIClient) -> None:
    created = staff.post(
        "/api/v1/teams", {"name": "research", "rpm_limit": 10, "allowed_models": ["demo/*"]}, format="json"
    )
    assert created.status_code == 201
    assert {k: v for k, v in created.json().items() if k != "created_at"} == {
        "name": "research",
        "rpm_limit": 10,
        "tpm_limit": None,
        "max_tokens_cap": None,
        "max_prompt_tokens": None,
        "max_parallel_requests": None,
        "allowed_models": ["demo/*"],
        "keys": 0,
    }
    team = Team.objects.get(name="research")
    key, raw = apikey_create(name="k", team=team)
    patched = staff.patch("/api/v1/teams/research", {"tpm_limit": 500}, format="json")
    assert (patched.status_code, patched.json()["tpm_limit"], patched.json()["keys"]) == (200, 500, 1)
    assert client(raw).get("/api/v1/keys/me").json()["limits"]["team_tpm_limit"] == 500

    refused = staff.delete("/api/v1/teams/research")
    assert refused.status_code == 409
    assert error(refused) == {
        "message": "The team 'research' has 1 key: move or delete them first.",
        "type": "conflict_error",
        "code": "team_has_keys",
        "param": None,
    }
    key.delete()
    assert staff.delete("/api/v1/teams/research").status_code == 204
    assert not Team.objects.exists()
    assert staff.get("/api/v1/teams/research").status_code == 404


def test_bad_team_input_is_a_400_naming_the_param(staff: APIClient) -> None:
    Team.objects.create(name="taken")
    cases = [
        ({"name": "has space"}, "name"),
        ({"name": "taken"}, "name"),
        ({"name": "t", "tpm_limit": -1}, "tpm_limit"),
        ({"name": "t", "allowed_models": [""]}, "allowed_models.0"),  # the item itself
    ]
    for body, param in cases:
        response = staff.post("/api/v1/teams", body, format="json")
        assert (response.status_code, error(response)["param"]) == (400, param), body
    assert list(Team.objects.values_list("name", flat=True)) == ["taken"]


def test_non_staff_keys_are_refused_the_staff_api() -> None:
    key, raw = apikey_create(name="plain")
    Team.objects.create(name="t")
    user = client(raw)
    for method, path in [
        ("get", "/api/v1/keys"),
        ("post", "/api/v1/keys"),
        ("get", f"/api/v1/keys/{key.prefix}"),
        ("patch", f"/api/v1/keys/{key.prefix}"),
        ("delete", f"/api/v1/keys/{key.prefix}"),
        ("post", f"/api/v1/keys/{key.prefix}/rotate"),
        ("get", "/api/v1/teams"),
        ("post", "/api/v1/teams"),
        ("get", "/api/v1/teams/t"),
        ("patch", "/api/v1/teams/t"),
        ("delete", "/api/v1/teams/t"),
    ]:
        response = getattr(user, method)(path, {}, format="json")
        assert (response.status_code, error(response)["type"]) == (403, "permission_error"), (method, path)
    assert ApiKey.objects.get(pk=key.pk).hashed_key == hash_key(raw)
    assert Team.objects.filter(name="t").exists()
