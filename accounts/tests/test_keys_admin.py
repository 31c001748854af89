"""The admin for keys and teams (allowed models and tags one a line, state, rotation) and createapikey's flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Team, hash_key
from accounts.selectors import apikey_lookup
from accounts.services import apikey_create

pytestmark = pytest.mark.django_db


def test_the_admin_edits_allowed_models_and_tags_one_a_line(admin_client: Client) -> None:
    team = Team.objects.create(name="ops")
    response = admin_client.post(
        "/admin/accounts/apikey/add/",
        {
            "name": "from-admin",
            "is_active": "on",
            "team": team.pk,
            "allowed_models": "openai/*\n\ncode\n",
            "tags": "ci\nnightly",
            "max_parallel_requests": "2",
        },
        follow=True,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="from-admin")
    assert (key.allowed_models, key.tags, key.max_parallel_requests, key.team) == (
        ["openai/*", "code"], ["ci", "nightly"], 2, team,
    )  # fmt: skip
    page = admin_client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert "openai/*\ncode</textarea>" in page


def test_the_admin_refuses_a_malformed_pattern(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/accounts/apikey/add/", {"name": "bad", "is_active": "on", "allowed_models": "openai/[x]"}
    )
    assert response.status_code == 200  # the form again, with its error
    assert "&#x27;openai/[x]&#x27; is not a valid model pattern." in response.content.decode()
    assert not ApiKey.objects.filter(name="bad").exists()


def test_the_admin_list_shows_disabled_and_expired_keys(admin_client: Client) -> None:
    apikey_create(name="on")
    apikey_create(name="off", is_active=False)
    apikey_create(name="old", expires_at=timezone.now() - timedelta(days=1))
    page = admin_client.get("/admin/accounts/apikey/").content.decode()
    states = {
        name: page.split(f">{name}<")[1].split('class="field-state">')[1].split("<")[0] for name in ("on", "off", "old")
    }
    assert states == {"on": "active", "off": "disabled", "old": "expired"}


def test_the_admin_rotates_a_key_and_shows_its_new_secret_once(admin_client: Client) -> None:
    key, old = apikey_create(name="rotate-me")
    response = admin_client.post(
        "/admin/accounts/apikey/", {"action": "rotate", "_selected_action": [key.pk]}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith("New secret for 'rotate-me': spg-")
    new = next(word for word in shown[0].split() if word.startswith("spg-"))
    key.refresh_from_db()
    assert key.hashed_key == hash_key(new) and key.previous_hashed_key == hash_key(old)
    assert apikey_lookup(new) is not None and apikey_lookup(old) is not None  # the old one, in its grace
    assert new not in admin_client.get("/admin/accounts/apikey/").content.decode()


def test_createapikey_takes_models_expiry_tags_and_parallel_requests() -> None:
    team = Team.objects.create(name="research")
    out = StringIO()
    call_command(
        "createapikey", "bot", "--team", "research", "--models", "openai/*, code", "--expires",
        "2099-01-02T03:04:05Z", "--tags", "ci,eu", "--max-parallel", "3", stdout=out, stderr=StringIO(),
    )  # fmt: skip
    raw = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get()
    assert key.hashed_key == hash_key(raw)
    assert (key.team, key.allowed_models, key.tags, key.max_parallel_requests, key.expires_at) == (
        team, ["openai/*", "code"], ["ci", "eu"], 3, datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--models", "openai/[x]"], "--models: 'openai/[x]' is not a valid model pattern."),
        (["--expires", "tomorrow"], "--expires: 'tomorrow' is not an ISO 8601 date and time"),
        (["--expires", "2001-01-01T00:00:00Z"], "--expires must be in the future"),
        (["--max-parallel", "0"], "--max-parallel must be a positive integer"),
    ],
)
def test_createapikey_refuses_bad_flags(flags: list[str], message: str) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("createapikey", "bot", *flags, stdout=StringIO(), stderr=StringIO())
    assert str(caught.value) == message
    assert not ApiKey.objects.exists()


def test_the_admin_edits_a_teams_limits_and_allowed_models(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/accounts/team/add/",
        {"name": "research", "rpm_limit": "30", "max_parallel_requests": "2", "allowed_models": "demo/*\ncode"},
        follow=True,
    )
    assert response.status_code == 200
    team = Team.objects.get()
    assert (team.name, team.rpm_limit, team.max_parallel_requests, team.allowed_models) == (
        "research", 30, 2, ["demo/*", "code"],
    )  # fmt: skip
    _, raw = apikey_create(name="member", team=team)
    info = apikey_lookup(raw)
    assert info is not None and (info.rpm_limit, info.team_allowed_models) == (30, ("demo/*", "code"))
