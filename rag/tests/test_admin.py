"""The admin sets a collection's owner and sharing, and a key's team (issue 19)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiKey, Team
from accounts.services import apikey_create
from rag.models import Collection
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db


def test_staff_hand_a_collection_to_a_team_and_share_it(admin_client: Client) -> None:
    alpha, beta = Team.objects.create(name="alpha"), Team.objects.create(name="beta")
    collection = Collection.objects.create(name="kb", embedding_model="demo/demo-embed")
    page = f"/admin/rag/collection/{collection.pk}/change/"
    data = admin_form_data(admin_client.get(page))
    data.update({"owner_team": alpha.pk, "shared_with_teams": [beta.pk], "public_read": "on"})
    response = admin_client.post(page, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    collection.refresh_from_db()
    assert (collection.owner_label, collection.public_read) == ("team:alpha", True)
    assert list(collection.shared_with_teams.values_list("name", flat=True)) == ["beta"]
    assert "team:alpha" in admin_client.get("/admin/rag/collection/").content.decode()


def test_the_admin_refuses_two_owners_or_a_name_the_owner_already_has(admin_client: Client) -> None:
    alpha = Team.objects.create(name="alpha")
    key, _ = apikey_create(name="k")
    Collection.objects.create(name="kb", embedding_model="demo/demo-embed", owner_team=alpha)
    other = Collection.objects.create(name="other", embedding_model="demo/demo-embed")
    page = f"/admin/rag/collection/{other.pk}/change/"
    for change in ({"owner_team": alpha.pk, "owner_key": key.pk}, {"owner_team": alpha.pk, "name": "kb"}):
        data = {**admin_form_data(admin_client.get(page)), **change}
        response = admin_client.post(page, data)
        assert response.status_code == 200  # the form again, with its error
        assert response.context["adminform"].form.errors, change
    other.refresh_from_db()
    assert (other.name, other.owner_label) == ("other", "staff")


def test_staff_put_a_key_in_a_team(admin_client: Client) -> None:
    team = Team.objects.create(name="research")
    key, _ = apikey_create(name="k")
    page = f"/admin/accounts/apikey/{key.pk}/change/"
    response = admin_client.post(page, {**admin_form_data(admin_client.get(page)), "team": team.pk})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).team == team


def test_an_admin_session_reads_the_collections_api_as_staff_and_a_plain_user_is_refused(
    admin_client: Client, django_user_model: Any
) -> None:
    alpha = Team.objects.create(name="alpha")
    Collection.objects.create(name="kb", embedding_model="demo/demo-embed", owner_team=alpha)
    Collection.objects.create(name="notes", embedding_model="demo/demo-embed")
    listed = admin_client.get("/api/v1/rag/collections").json()["data"]
    assert [(c["name"], c["owner"]) for c in listed] == [("kb", "team:alpha"), ("notes", "staff")]

    user = django_user_model.objects.create_user("plain", password="pw-123456789")
    client = Client()
    client.force_login(user)
    response = client.get("/api/v1/rag/collections")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "RAG collections belong to API keys: send one."
