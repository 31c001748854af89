"""API keys: hashed storage, the createapikey command, Bearer and X-API-Key authentication."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team
from accounts.selectors import apikey_lookup
from accounts.services import apikey_create

pytestmark = pytest.mark.django_db


def test_createapikey_prints_the_raw_key_alone_on_the_last_line() -> None:
    out, err = StringIO(), StringIO()
    call_command("createapikey", "ci-bot", "--rpm", "60", "--tpm", "5000", "--staff", stdout=out, stderr=err)
    raw = out.getvalue().strip().splitlines()[-1]
    assert raw.startswith("spg-") and len(raw) == 47
    key = ApiKey.objects.get()
    assert (key.name, key.rpm_limit, key.tpm_limit, key.is_staff) == ("ci-bot", 60, 5000, True)
    assert key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert key.prefix == raw[:12]
    assert raw not in err.getvalue()


def test_createapikey_refuses_a_non_positive_limit() -> None:
    with pytest.raises(CommandError, match="--rpm must be a positive integer"):
        call_command("createapikey", "x", "--rpm", "0", stdout=StringIO(), stderr=StringIO())
    assert ApiKey.objects.count() == 0


def test_createapikey_puts_the_key_in_an_existing_team() -> None:
    team = Team.objects.create(name="research")
    out = StringIO()
    call_command("createapikey", "alice", "--team", "research", stdout=out, stderr=StringIO())
    raw = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get()
    assert (key.name, key.team) == ("alice", team)
    info = apikey_lookup(raw)
    assert info is not None and info.team_id == team.pk


def test_createapikey_refuses_an_unknown_team_rather_than_making_one() -> None:
    with pytest.raises(CommandError, match="There is no team 'reserch': create it in the admin first."):
        call_command("createapikey", "alice", "--team", "reserch", stdout=StringIO(), stderr=StringIO())
    assert (ApiKey.objects.count(), Team.objects.count()) == (0, 0)


def test_the_raw_key_is_stored_nowhere() -> None:
    key, raw = apikey_create(name="k")
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert all(raw not in str(value) for value in stored.values())


def test_a_valid_key_authenticates_as_a_bearer_token() -> None:
    _, raw = apikey_create(name="k")
    response = APIClient().get("/api/v1/status", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json() == {"status": "not_ready", "models": []}


def test_a_valid_key_authenticates_through_x_api_key() -> None:
    _, raw = apikey_create(name="k")
    response = APIClient().get("/api/v1/status", HTTP_X_API_KEY=raw)
    assert response.status_code == 200
    assert response.json() == {"status": "not_ready", "models": []}


def test_the_prefix_alone_never_authenticates() -> None:
    key, _ = apikey_create(name="k")
    response = APIClient().get("/api/v1/status", HTTP_AUTHORIZATION=f"Bearer {key.prefix}")
    assert response.status_code == 401


def test_the_stored_hash_does_not_authenticate() -> None:
    key, _ = apikey_create(name="k")
    response = APIClient().get("/api/v1/status", HTTP_AUTHORIZATION=f"Bearer {key.hashed_key}")
    assert response.status_code == 401


def test_a_deactivated_key_is_refused_as_disabled() -> None:
    key, raw = apikey_create(name="k")
    key.is_active = False
    key.save()
    response = APIClient().get("/api/v1/status", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401
    assert response.json()["error"] == {
        "message": "This API key is disabled.",
        "type": "authentication_error",
        "code": "key_disabled",
        "param": None,
    }


def test_a_non_bearer_authorization_scheme_is_refused() -> None:
    _, raw = apikey_create(name="k")
    response = APIClient().get("/api/v1/status", HTTP_AUTHORIZATION=f"Basic {raw}")
    assert response.status_code == 401


def test_the_admin_shows_a_new_key_once_and_stores_its_hash(admin_client: object) -> None:
    from django.test import Client

    assert isinstance(admin_client, Client)
    response = admin_client.post("/admin/accounts/apikey/add/", {"name": "from-admin", "is_active": "on"}, follow=True)
    assert response.status_code == 200
    key = ApiKey.objects.get(name="from-admin")
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) >= 1
    raw = next(word for m in shown for word in m.split() if word.startswith("spg-"))
    assert hashlib.sha256(raw.encode()).hexdigest() == key.hashed_key
