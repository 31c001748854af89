"""GET /api/v1/energy/summary: sums exact for every group_by and range, CSV, access rules, errors."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team
from accounts.services import apikey_create
from energy.selectors import GROUP_BYS
from ledger.models import UsageRecord
from ledger.rollups import usage_rollups_rebuild
from ledger.writer import usage_records_create

pytestmark = pytest.mark.django_db

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
MODELS = [("demo/demo-fast", "demo"), ("demo/demo-smart", "demo"), ("lab/llama-8b", "lab")]


def make_records(keys: list[int | None], count: int, seed: int = 7) -> list[UsageRecord]:
    """Records over four days, some a breath away from midnight, with binary-exact energies (k / 1024 Wh),
    so that any order of addition gives the same sums."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        if i % 10 == 0:  # hug a midnight from either side
            at = DAY0 + timedelta(days=rng.randint(1, 3), seconds=rng.choice([-1, -0.25, 0, 0.25, 1]))
        else:
            at = DAY0 + timedelta(seconds=rng.uniform(0, 4 * 86400))
        model, provider = rng.choice(MODELS)
        low, central, high = sorted(rng.randint(0, 4096) / 1024 for _ in range(3))
        records.append(
            UsageRecord(
                request_id=f"r{i}",
                api_key_id=rng.choice(keys),
                user_id=rng.choice(["", "alice", "bob", "carol"]),
                endpoint="generate",
                model=model,
                provider=provider,
                prompt_tokens=rng.randint(0, 5000),
                completion_tokens=rng.randint(0, 800),
                cost_usd=Decimal(rng.randint(0, 10**6)) / Decimal(10**8),
                energy_wh=central,
                energy_wh_low=low,
                energy_wh_high=high,
                co2e_g=central / 2,
                co2e_g_low=low / 2,
                co2e_g_high=high / 2,
                energy_estimated=rng.random() < 0.3,
                created_at=at,
            )
        )
    return records


def write(records: list[UsageRecord]) -> None:
    # In three batches, so roll-up rows are both created and added to.
    for start in range(0, len(records), 97):
        usage_records_create(records[start : start + 97])


def expected(
    records: Iterable[UsageRecord],
    group_by: str,
    since: datetime | None,
    until: datetime | None,
    key_ids: set[int | None] | None,
    key_group: Callable[[int | None], tuple[str, str]],
) -> list[dict[str, Any]]:
    """The summary computed the slow way, from the records themselves."""
    groups: dict[Any, dict[str, Any]] = {}
    for r in records:
        if since is not None and r.created_at < since or until is not None and r.created_at >= until:
            continue
        if key_ids is not None and r.api_key_id not in key_ids:
            continue
        group: str | None
        if group_by == "key":
            group, label = key_group(r.api_key_id)
        elif group_by == "team":
            group, label = TEAMS.get(r.api_key_id), ""
        elif group_by == "day":
            group, label = r.created_at.astimezone(UTC).date().isoformat(), ""
        else:
            group, label = str(getattr(r, group_by)), ""
        row = groups.setdefault(group, {"group": group, "label": label, "cost": Decimal(0)})
        row["requests"] = row.get("requests", 0) + 1
        for name in ("prompt_tokens", "completion_tokens"):
            row[name] = row.get(name, 0) + getattr(r, name)
        for name in ("energy_wh", "energy_wh_low", "energy_wh_high", "co2e_g", "co2e_g_low", "co2e_g_high"):
            row[name] = row.get(name, 0.0) + getattr(r, name)
        row["cost"] += Decimal(str(r.cost_usd))
        row["estimated_requests"] = row.get("estimated_requests", 0) + int(r.energy_estimated)
    rows = []
    for row in groups.values():
        row["cost_usd"] = float(row.pop("cost"))
        for name in ("energy_wh", "energy_wh_low", "energy_wh_high", "co2e_g", "co2e_g_low", "co2e_g_high"):
            row[name] = round(row[name], 9)  # the API's precision (1 nWh)
        if not row["label"]:
            del row["label"]
        rows.append(row)
    if group_by == "day":
        return sorted(rows, key=lambda r: r["group"])
    return sorted(rows, key=lambda r: (-r["energy_wh"], r["group"] or ""))


def client(raw_key: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return c


def summary(c: APIClient, **params: str) -> Any:
    reply = c.get("/api/v1/energy/summary", params)
    assert reply.status_code == 200, reply.content
    return reply.json()


# group_by=team: the team of each key that has one (the others', and no key's, usage is the group None).
TEAMS: dict[int | None, str] = {}


@pytest.fixture
def keys() -> dict[str, tuple[ApiKey, str]]:
    made = {
        "staff": apikey_create(name="ops", is_staff=True),
        "a": apikey_create(name="app a", team=Team.objects.create(name="ml")),
        "b": apikey_create(name="app b"),
    }
    TEAMS.clear()
    TEAMS[made["a"][0].pk] = "ml"
    return made


def key_group_for(keys: dict[str, tuple[ApiKey, str]]) -> Callable[[int | None], tuple[str, str]]:
    by_id = {key.pk: key for key, _ in keys.values()}
    return lambda key_id: ("", "(no key)") if key_id is None else (by_id[key_id].prefix, by_id[key_id].name)


WINDOWS: list[tuple[datetime | None, datetime | None]] = [
    (None, None),
    (DAY0 + timedelta(days=1), DAY0 + timedelta(days=3)),  # whole days: roll-ups only
    (DAY0 + timedelta(hours=13, minutes=37), DAY0 + timedelta(days=3, hours=2)),  # part-days at both ends
    (DAY0 + timedelta(days=2) - timedelta(seconds=0.5), DAY0 + timedelta(days=2, seconds=0.5)),  # across midnight
    (DAY0 + timedelta(days=1, hours=10), DAY0 + timedelta(days=1, hours=11)),  # inside one day
    (DAY0 + timedelta(days=2, hours=6), None),
    (None, DAY0 + timedelta(days=1, seconds=0.25)),
]


@pytest.mark.parametrize("group_by", GROUP_BYS)
def test_it_sums_exactly_for_every_group_and_range(group_by: str, keys: dict[str, tuple[ApiKey, str]]) -> None:
    records = make_records([keys["a"][0].pk, keys["b"][0].pk, keys["staff"][0].pk, None], 300)
    write(records)
    staff = client(keys["staff"][1])
    for since, until in WINDOWS:
        params = {"group_by": group_by}
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        body = summary(staff, **params)
        want = expected(records, group_by, since, until, None, key_group_for(keys))
        assert body["rows"] == want, (since, until)
        assert body["totals"]["requests"] == sum(r["requests"] for r in want)
        assert body["totals"]["energy_wh"] == round(sum(r["energy_wh"] for r in want), 9)


def test_it_gives_the_same_answer_after_rebuilding_the_rollups(keys: dict[str, tuple[ApiKey, str]]) -> None:
    write(make_records([keys["a"][0].pk, None], 200, seed=3))
    staff = client(keys["staff"][1])
    before = {g: summary(staff, group_by=g, since="2026-03-01T05:00:00Z")["rows"] for g in GROUP_BYS}
    assert usage_rollups_rebuild() > (0, 0)
    assert {g: summary(staff, group_by=g, since="2026-03-01T05:00:00Z")["rows"] for g in GROUP_BYS} == before


def test_a_normal_key_sees_only_its_own_usage(keys: dict[str, tuple[ApiKey, str]]) -> None:
    records = make_records([keys["a"][0].pk, keys["b"][0].pk, None], 150)
    write(records)
    a = keys["a"][0]
    for group_by in GROUP_BYS:
        body = summary(client(keys["a"][1]), group_by=group_by, since="2026-03-02T12:00:00Z")
        since = datetime(2026, 3, 2, 12, tzinfo=UTC)
        assert body["rows"] == expected(records, group_by, since, None, {a.pk}, key_group_for(keys))
    assert [r["group"] for r in summary(client(keys["a"][1]), group_by="key")["rows"]] == [a.prefix]
    assert {r["group"] for r in summary(client(keys["staff"][1]), group_by="key")["rows"]} == {
        a.prefix,
        keys["b"][0].prefix,
        "",
    }


def test_a_dashboard_session_sees_the_keys_its_user_owns_and_staff_sees_all(
    keys: dict[str, tuple[ApiKey, str]],
) -> None:
    owner = User.objects.create_user("owner", password="pw-owner-123")
    a = keys["a"][0]
    a.owner = owner
    a.save()
    write(make_records([a.pk, keys["b"][0].pk], 60))
    session = APIClient()
    session.force_login(owner)
    assert [r["group"] for r in summary(session, group_by="key")["rows"]] == [a.prefix]
    admin = User.objects.create_user("boss", password="pw-boss-123", is_staff=True)
    session.force_login(admin)
    assert len(summary(session, group_by="key")["rows"]) == 2


def test_it_refuses_a_request_without_a_key() -> None:
    reply = APIClient().get("/api/v1/energy/summary")
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"group_by": "colour"}, "group_by", "invalid_group_by"),
        ({"since": "yesterday"}, "since", "invalid_date"),
        ({"until": "2026-13-01"}, "until", "invalid_date"),
        ({"since": "2026-03-02", "until": "2026-03-01"}, "since", "invalid_range"),
        ({"format": "xml"}, "format", "invalid_format"),
        ({"format": "csv", "group_by": "colour"}, "group_by", "invalid_group_by"),
    ],
)
def test_it_answers_400_with_the_envelope_for_bad_parameters(
    params: dict[str, str], param: str, code: str, api_key: tuple[ApiKey, str]
) -> None:
    reply = client(api_key[1]).get("/api/v1/energy/summary", params)
    assert reply.status_code == 400
    assert reply["Content-Type"] == "application/json"
    assert reply.json()["error"] == {
        "message": reply.json()["error"]["message"],
        "type": "invalid_request_error",
        "code": code,
        "param": param,
    }


def test_it_answers_csv_that_parses_to_the_same_rows(keys: dict[str, tuple[ApiKey, str]]) -> None:
    write(make_records([keys["a"][0].pk, None], 80))
    staff = client(keys["staff"][1])
    rows = summary(staff, group_by="key")["rows"]
    reply = staff.get("/api/v1/energy/summary", {"group_by": "key", "format": "csv"})
    assert reply.status_code == 200
    assert reply["Content-Type"] == "text/csv; charset=utf-8"
    assert reply["Content-Disposition"] == 'attachment; filename="energy-summary-key.csv"'
    parsed = list(csv.DictReader(io.StringIO(reply.content.decode("utf-8"))))
    assert [
        {
            "group": row["group"],
            "label": row["label"],
            "requests": int(row["requests"]),
            "energy_wh": float(row["energy_wh"]),
            "cost_usd": float(row["cost_usd"]),
        }
        for row in parsed
    ] == [{k: r.get(k, "") for k in ("group", "label", "requests", "energy_wh", "cost_usd")} for r in rows]
    assert list(parsed[0]) == [
        "group",
        "label",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "energy_wh",
        "energy_wh_low",
        "energy_wh_high",
        "co2e_g",
        "co2e_g_low",
        "co2e_g_high",
        "cost_usd",
        "estimated_requests",
    ]


def test_it_accepts_dates_and_offsets_and_reads_them_as_utc(keys: dict[str, tuple[ApiKey, str]]) -> None:
    records = make_records([None], 100)
    write(records)
    staff = client(keys["staff"][1])
    by_date = summary(staff, group_by="day", since="2026-03-02", until="2026-03-03")
    by_offset = summary(staff, group_by="day", since="2026-03-02T01:00:00+01:00", until="2026-03-03T00:00:00Z")
    assert by_date["rows"] == by_offset["rows"]
    assert [r["group"] for r in by_date["rows"]] == ["2026-03-02"]
    assert by_date["since"] == "2026-03-02T00:00:00+00:00"


def test_the_rebuild_command_recounts_records_written_behind_its_back(keys: dict[str, tuple[ApiKey, str]]) -> None:
    UsageRecord.objects.bulk_create(make_records([None], 40))  # not through usage_records_create
    staff = client(keys["staff"][1])
    assert summary(staff)["rows"] == []
    out = io.StringIO()
    call_command("energy_rollups", "--rebuild", stdout=out)
    assert out.getvalue().startswith("rebuilt: ")
    assert summary(staff)["totals"]["requests"] == 40
