"""Spend by team and the summary's team and key filters: exact sums, what a non-staff caller may see, the
filters' choices (``GET /api/v1/energy/filters``), bad filters."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team
from accounts.services import apikey_create
from ledger.models import UsageRecord
from ledger.writer import usage_records_create

pytestmark = pytest.mark.django_db

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
SINCE = (DAY0 + timedelta(hours=12)).isoformat()  # a part-day, read from the records, then whole days from roll-ups


def client(raw: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return c


def summary(c: APIClient | Client, **params: str) -> Any:
    reply = c.get("/api/v1/energy/summary", params)
    assert reply.status_code == 200, reply.content
    return reply.json()


def groups(c: APIClient | Client, **params: str) -> dict[str | None, tuple[int, float, float]]:
    """group → (requests, energy_wh, cost_usd)."""
    return {r["group"]: (r["requests"], r["energy_wh"], r["cost_usd"]) for r in summary(c, **params)["rows"]}


@pytest.fixture
def usage() -> dict[str, Any]:
    """Two teams: ml (keys a and b), research (key c); key d without a team; usage without a key.

    Each key's requests are at hours 6 (before SINCE), 18 (the part-day after it) and 30 (a whole day), with
    binary-exact energies, so that the expected sums are exact.
    """
    ml, research = Team.objects.create(name="ml"), Team.objects.create(name="research")
    keys = {
        "staff": apikey_create(name="ops", is_staff=True),
        "a": apikey_create(name="a", team=ml),
        "b": apikey_create(name="b", team=ml),
        "c": apikey_create(name="c", team=research),
        "d": apikey_create(name="d"),
    }
    per_key: dict[str | None, tuple[float, str]] = {
        "a": (0.5, "0.01"),
        "b": (0.25, "0.02"),
        "c": (2.0, "0.04"),
        "d": (1.0, "0.08"),
        None: (4.0, "0.16"),
    }
    records = []
    for name, (energy, cost) in per_key.items():
        key_id = keys[name][0].pk if name is not None else None
        for hour in (6, 18, 30):
            records.append(
                UsageRecord(
                    request_id=f"{name}-{hour}",
                    api_key_id=key_id,
                    endpoint="generate",
                    model="demo/demo-fast",
                    provider="demo",
                    prompt_tokens=100,
                    completion_tokens=10,
                    cost_usd=Decimal(cost),
                    energy_wh=energy,
                    energy_wh_low=energy / 2,
                    energy_wh_high=energy * 2,
                    co2e_g=energy / 4,
                    co2e_g_low=energy / 8,
                    co2e_g_high=energy / 2,
                    created_at=DAY0 + timedelta(hours=hour),
                )
            )
    usage_records_create(records)
    return {name: (key, raw) for name, (key, raw) in keys.items()}


def test_spend_groups_by_team_with_keys_without_one_under_null(usage: dict[str, Any]) -> None:
    staff = client(usage["staff"][1])
    assert groups(staff, group_by="team") == {
        None: (6, 15.0, 0.72),  # key d (3 × 1 Wh) and the usage without a key (3 × 4 Wh)
        "research": (3, 6.0, 0.12),
        "ml": (6, 2.25, 0.09),  # keys a and b
    }
    # Rows read from the records (the part-day) and from the roll-ups (the whole day) add up the same way.
    assert groups(staff, group_by="team", since=SINCE) == {
        None: (4, 10.0, 0.48),
        "research": (2, 4.0, 0.08),
        "ml": (4, 1.5, 0.06),
    }
    body = summary(staff, group_by="team")
    assert [r["group"] for r in body["rows"]] == [None, "research", "ml"]  # by energy, highest first
    assert body["rows"][2] == {
        "group": "ml",
        "requests": 6,
        "prompt_tokens": 600,
        "completion_tokens": 60,
        "energy_wh": 2.25,
        "energy_wh_low": 1.125,
        "energy_wh_high": 4.5,
        "co2e_g": 0.5625,
        "co2e_g_low": 0.28125,
        "co2e_g_high": 1.125,
        "cost_usd": 0.09,
        "estimated_requests": 0,
    }
    assert body["totals"]["requests"] == 15 and body["totals"]["energy_wh"] == 23.25


def test_a_key_counts_for_the_team_it_is_in_now(usage: dict[str, Any]) -> None:
    usage["d"][0].team = Team.objects.get(name="research")
    usage["d"][0].save()
    assert groups(client(usage["staff"][1]), group_by="team") == {
        None: (3, 12.0, 0.48),
        "research": (6, 9.0, 0.36),
        "ml": (6, 2.25, 0.09),
    }


def test_staff_filter_by_team_and_by_key(usage: dict[str, Any]) -> None:
    staff = client(usage["staff"][1])
    a, b = usage["a"][0], usage["b"][0]
    assert groups(staff, group_by="key", team="ml") == {a.prefix: (3, 1.5, 0.03), b.prefix: (3, 0.75, 0.06)}
    assert groups(staff, group_by="model", key=a.prefix) == {"demo/demo-fast": (3, 1.5, 0.03)}
    assert groups(staff, group_by="team", team="ml", key=b.prefix) == {"ml": (3, 0.75, 0.06)}
    assert groups(staff, group_by="team", team="research", key=b.prefix) == {}  # b is not in research


def test_a_non_staff_key_sees_only_its_own_usage_whatever_it_asks(usage: dict[str, Any]) -> None:
    a_key, a_raw = usage["a"]
    mine = {a_key.prefix: (3, 1.5, 0.03)}
    a = client(a_raw)
    assert groups(a, group_by="key") == mine
    assert groups(a, group_by="team") == {"ml": (3, 1.5, 0.03)}  # not its teammate's usage
    assert groups(a, group_by="key", team="ml") == mine
    assert groups(a, group_by="key", team="research") == {}
    assert groups(a, group_by="key", key=usage["c"][0].prefix) == {}
    assert groups(a, group_by="key", key=a_key.prefix) == mine


def test_a_dashboard_user_sees_the_usage_of_the_keys_they_own(usage: dict[str, Any]) -> None:
    carol = User.objects.create_user("carol", password="pw-carol-123")
    ApiKey.objects.filter(pk__in=[usage["b"][0].pk, usage["d"][0].pk]).update(owner=carol)
    session = Client()
    session.force_login(carol)
    assert groups(session, group_by="team") == {None: (3, 3.0, 0.24), "ml": (3, 0.75, 0.06)}
    assert session.get("/api/v1/energy/filters").json() == {
        "teams": ["ml"],
        "keys": [
            {"prefix": usage["b"][0].prefix, "name": "b", "team": "ml"},
            {"prefix": usage["d"][0].prefix, "name": "d", "team": None},
        ],
    }


def test_the_filters_list_every_team_and_key_for_staff_and_its_own_for_a_key(
    usage: dict[str, Any], admin_client: Client
) -> None:
    everything = admin_client.get("/api/v1/energy/filters").json()
    assert everything["teams"] == ["ml", "research"]
    assert [(k["name"], k["team"]) for k in everything["keys"]] == [
        ("a", "ml"),
        ("b", "ml"),
        ("c", "research"),
        ("d", None),
        ("ops", None),
    ]
    c_key, c_raw = usage["c"]
    assert client(c_raw).get("/api/v1/energy/filters").json() == {
        "teams": ["research"],
        "keys": [{"prefix": c_key.prefix, "name": "c", "team": "research"}],
    }
    assert APIClient().get("/api/v1/energy/filters").status_code == 401


def test_team_grouping_as_csv_leaves_the_no_team_group_empty(usage: dict[str, Any]) -> None:
    reply = client(usage["staff"][1]).get("/api/v1/energy/summary", {"group_by": "team", "format": "csv"})
    assert reply.status_code == 200
    rows = list(csv.DictReader(io.StringIO(reply.content.decode())))
    assert [(r["group"], r["requests"], r["energy_wh"]) for r in rows] == [
        ("", "6", "15.0"),
        ("research", "3", "6.0"),
        ("ml", "6", "2.25"),
    ]


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"team": "nobody"}, "team", "team_not_found"),
        ({"key": "spg-nothere0"}, "key", "key_not_found"),
        ({"team": "t" * 101}, "team", None),
        ({"key": "spg-" + "x" * 20}, "key", None),
        ({"team": "a\x00b"}, "team", None),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(
    usage: dict[str, Any], params: dict[str, str], param: str, code: str | None
) -> None:
    reply = client(usage["staff"][1]).get("/api/v1/energy/summary", params)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
