"""The dashboard pages' server side (no browser): login, what the shell carries, who may refresh."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from routing.seed import seed_defaults

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded_db(db: None) -> None:
    seed_defaults()


def client_for(*, staff: bool) -> Client:
    user = get_user_model().objects.create_user("viewer", password="a-password-123", is_staff=staff)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ["/", "/results/"])
def test_it_redirects_anonymous_visitors_to_the_login(path: str, seeded_db: None) -> None:
    response = Client().get(path)
    assert (response.status_code, response["Location"]) == (302, f"/admin/login/?next={path}")


def test_the_dashboard_carries_the_models_their_statistics_and_the_demo_banner(seeded_db: None) -> None:
    response = client_for(staff=True).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-model="demo/demo-fast"' in html and 'data-model="demo/demo-smart"' in html
    assert "Demo mode: no real provider configured." in html
    assert '<section id="energy-panel"' in html
    assert 'id="refresh" type="button" data-state="idle"\n' in html  # enabled for staff
    initial = json.loads(html.split('id="initial-stats" type="application/json">')[1].split("</script>")[0])
    assert [m["model"] for m in initial["models"]] == ["demo/demo-fast", "demo/demo-smart"]
    assert {m["status"] for m in initial["models"]} == {"unknown"}
    assert response.cookies["csrftoken"].value  # for the POST of "Refresh now"


def test_refresh_now_is_disabled_for_users_who_are_not_staff(seeded_db: None) -> None:
    html = client_for(staff=False).get("/").content.decode()
    assert 'disabled title="Only staff users can run probes"' in html


def test_the_probe_log_offers_the_monitored_models_and_providers_as_filters(seeded_db: None) -> None:
    response = client_for(staff=False).get("/results/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<option value="demo/demo-fast">demo/demo-fast</option>' in html
    assert '<option value="demo">demo</option>' in html
    assert '<option value="congestion">Congestion</option>' in html
    assert 'data-page-size="25"' in html
