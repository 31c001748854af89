"""The public face of the monitor: /status/ (server-rendered, no login), its Atom feed, GET /api/v1/incidents,
and the state and open incident of one model in platform-status."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from monitoring.models import Incident, IncidentUpdate, MaintenanceWindow, Rollup
from monitoring.selectors import platform_status
from monitoring.statistics import floor_day
from routing.models import LLMModel
from tests.fixtures import Fake, Gateway
from tests.http import call

from .factories import add_model, demo, make_probe

# The pages are read through Django's test client inside a test's transaction (cheap); the API through the
# real server, which needs committed rows.

ATOM = "{http://www.w3.org/2005/Atom}"


def incident(
    model: LLMModel | None, title: str, *, hours_ago: float, resolved_hours_ago: float | None = None
) -> Incident:
    now = timezone.now().replace(microsecond=0)
    started = now - timedelta(hours=hours_ago)
    resolved = now - timedelta(hours=resolved_hours_ago) if resolved_hours_ago is not None else None
    row = Incident.objects.create(
        model=model, title=title, started_at=started, resolved_at=resolved, updated_at=resolved or started
    )
    IncidentUpdate.objects.create(incident=row, status="investigating", message=f"{title}: looking", created_at=started)
    if resolved is not None:
        IncidentUpdate.objects.create(incident=row, status="resolved", message=f"{title}: fixed", created_at=resolved)
    return row


@pytest.fixture
def private(db: None) -> LLMModel:
    """A monitored model that is not public: the status page never names it (requested after the seeding)."""
    return add_model("secret-internal")


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- /status/ -------------------------------------------------------------------------------------------


def test_the_status_page_needs_no_login_and_shows_each_public_model(monitored_db: None, private: LLMModel) -> None:
    now = timezone.now()
    make_probe(demo("demo-fast"), now - timedelta(minutes=5), last=True)
    for minutes in (25, 15, 5):
        make_probe(
            demo("demo-smart"),
            now - timedelta(minutes=minutes),
            last=True,
            status="unknown",
            error_type="timeout",
            http_status=None,
        )
    make_probe(private, now - timedelta(minutes=5), last=True, status="unknown")
    Rollup.objects.create(
        model=demo("demo-fast"),
        period="day",
        start=floor_day(now) - timedelta(days=3),
        probes=10,
        successes=9,
        errors=1,
    )

    response = Client().get("/status/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "secret-internal" not in html
    assert re.findall(r'data-model="([^"]+)" data-state="([^"]+)"', html) == [
        ("demo/demo-fast", "operational"),
        ("demo/demo-smart", "down"),
    ]
    assert '<section id="overall" class="overall" data-status="partial_outage"' in html
    assert "3 consecutive probe failures: timeout" in text(html)
    # 90 cells a day; the one rolled up three days ago says how available the model was, days without data say so.
    fast = html.split('data-model="demo/demo-fast"')[1].split("</article>")[0]
    cells = re.findall(r'<li class="day" ([^>]*)>', fast)
    assert len(cells) == 90
    three_days_ago = (floor_day(now) - timedelta(days=3)).strftime("%Y-%m-%d")
    assert cells[86] == f'data-level="major" title="{three_days_ago}: 90.00 % available (10 probes)"'
    assert cells[0].endswith(': no data"') and 'data-level="none"' in cells[0]
    assert cells[89].startswith('data-level="ok" title=') and "100.00 % available (1 probe)" in cells[89]
    assert "<script" in html and 'src="/static/monitoring/status.js"' in html  # a script on top, not required


def test_it_lists_open_and_past_incidents_and_maintenance_but_nothing_private(
    monitored_db: None, private: LLMModel
) -> None:
    incident(demo("demo-fast"), "Fast is slow", hours_ago=2)
    incident(None, "Login outage", hours_ago=30, resolved_hours_ago=29)
    incident(private, "Secret model broke", hours_ago=3)
    now = timezone.now()
    current = MaintenanceWindow.objects.create(
        title="Database upgrade", starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1)
    )
    current.affected_models.set([demo("demo-smart"), private])
    MaintenanceWindow.objects.create(
        title="Network work", starts_at=now + timedelta(days=2), ends_at=now + timedelta(days=2, hours=2)
    )
    hidden = MaintenanceWindow.objects.create(title="Private work", starts_at=now, ends_at=now + timedelta(hours=1))
    hidden.affected_models.set([private])

    html = Client().get("/status/").content.decode()
    page = text(html)

    open_part, past_part = html.split('id="open-title"')[1].split('id="past-title"')
    assert "Fast is slow" in open_part and "Fast is slow: looking" in open_part
    assert "Login outage" in past_part and "Login outage: fixed" in past_part
    assert "Secret" not in html and "secret-internal" not in html and "Private work" not in html
    assert "Database upgrade In progress" in page and "UTC · demo/demo-smart" in page
    assert "Network work Scheduled" in page and "UTC · every model" in page
    assert 'data-model="demo/demo-smart" data-state="maintenance"' in html


# --- /status/feed/ --------------------------------------------------------------------------------------


def test_the_feed_is_atom_with_one_entry_per_public_incident(monitored_db: None, private: LLMModel) -> None:
    opened = incident(demo("demo-fast"), "Fast is slow", hours_ago=2)
    resolved = incident(None, "Login outage", hours_ago=30, resolved_hours_ago=29)
    incident(private, "Secret model broke", hours_ago=3)

    response = Client().get("/status/feed/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/atom+xml")
    feed = ET.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed"
    # RFC 4287's required elements: a feed's id, title, updated and (its entries having none) author.
    for required in ("atom:id", "atom:title", "atom:updated", "atom:author/atom:name"):
        assert feed.find(required, {"atom": ATOM[1:-1]}) is not None, required
    assert feed.find(f"{ATOM}link[@rel='alternate']").get("href") == "http://testserver/status/"  # type: ignore[union-attr]
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == ["Fast is slow", "Login outage (resolved)"]
    for entry, row in zip(entries, (opened, resolved), strict=True):
        assert entry.findtext(f"{ATOM}id") == f"http://testserver/status/#incident-{row.pk}"
        assert entry.findtext(f"{ATOM}updated") == row.updated_at.isoformat()
        assert entry.find(f"{ATOM}author") is None  # the feed's author stands for it
    assert "Login outage: fixed" in (entries[1].findtext(f"{ATOM}summary") or "")


# --- GET /api/v1/incidents and platform-status?model= ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_incidents_are_public_filtered_and_paginated(gateway: Gateway, monitored: Fake, private: LLMModel) -> None:
    opened = incident(demo("demo-fast"), "Fast is slow", hours_ago=2)
    incident(private, "Secret model broke", hours_ago=1)  # never listed
    incident(demo("demo-smart"), "Smart was down", hours_ago=5, resolved_hours_ago=4)
    incident(None, "Login outage", hours_ago=30, resolved_hours_ago=29)

    def get(query: str) -> Any:
        reply = call("GET", gateway.url + "/api/v1/incidents" + query, key="not-a-key")  # a key is ignored
        assert reply.status == 200, reply.text
        return reply.json()

    body = get("?state=open")
    assert body["count"] == 1
    assert body["results"][0] == {
        "id": opened.pk,
        "model": "demo/demo-fast",
        "title": "Fast is slow",
        "state": "open",
        "cause": "manual",
        "automatic": False,
        "started_at": opened.started_at.isoformat().replace("+00:00", "Z"),
        "resolved_at": None,
        "updated_at": opened.updated_at.isoformat().replace("+00:00", "Z"),
        "updates": [
            {
                "status": "investigating",
                "message": "Fast is slow: looking",
                "created_at": opened.started_at.isoformat().replace("+00:00", "Z"),
            }
        ],
    }
    assert [i["title"] for i in get("?state=resolved")["results"]] == ["Smart was down", "Login outage"]
    assert [i["title"] for i in get("?model=demo/demo-smart")["results"]] == ["Smart was down"]
    page = get("?page_size=2")
    assert (page["count"], len(page["results"]), page["next"] is not None) == (3, 2, True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("query", "code", "status"),
    [
        ("?state=closed", "invalid_choice", 400),
        ("?model=nope/none", "model_not_found", 404),
        ("?model=demo/secret-internal", "model_not_found", 404),  # not public: as if it did not exist
        ("?page=9", None, 404),
    ],
)
def test_bad_incident_queries_are_4xx_envelopes(
    gateway: Gateway, monitored: Fake, private: LLMModel, query: str, code: str | None, status: int
) -> None:
    reply = call("GET", gateway.url + "/api/v1/incidents" + query)
    assert reply.status == status
    assert set(reply.json()["error"]) == {"message", "type", "code", "param"}
    if code is not None:
        assert reply.json()["error"]["code"] == code


@pytest.mark.django_db(transaction=True)
def test_a_models_status_carries_its_open_incident(gateway: Gateway, monitored: Fake) -> None:
    opened = incident(demo("demo-fast"), "Fast is slow", hours_ago=2)
    make_probe(demo("demo-fast"), timezone.now(), last=True)

    body = call("GET", gateway.url + "/api/v1/platform-status?model=demo/demo-fast").json()

    assert body["open_incident"]["id"] == opened.pk
    assert body["open_incident"]["state"] == "open"
    assert (body["state"], body["state_reason"]) == ("operational", "Probes succeed")


def test_the_platform_is_in_maintenance_when_a_window_covers_every_model(monitored_db: None) -> None:
    now = timezone.now()
    for name in ("demo-fast", "demo-smart"):
        make_probe(demo(name), now - timedelta(minutes=1), last=True)
    window = MaintenanceWindow.objects.create(title="Move", starts_at=now, ends_at=now + timedelta(hours=1))
    window.affected_models.set([demo("demo-fast")])
    assert (platform_status(now=now)["status"], platform_status(now=now)["message"]) == (
        "operational",
        "In maintenance: demo/demo-fast.",
    )

    window.affected_models.clear()  # none named: every model

    body = platform_status(now=now)
    assert (body["status"], body["message"]) == ("maintenance", "Every model is in a maintenance window.")
    assert body["stats"] == {"operational_models": 2, "total_models": 2}
