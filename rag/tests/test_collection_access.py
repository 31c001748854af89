"""RAG collections are private to their owner (issue 19), over real HTTP against a running gateway, with a real
worker indexing and the fake upstream embedding and answering.

Team alpha owns three collections: ``secrets`` (private), ``handbook`` (shared with team beta) and ``faq``
(public-read). Every RAG route is tried by the key that created them, a key of the same team, a key of
team beta, a key without a team and a staff key: exact status codes, and no answer to a key that may not
read a collection holds its text.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.models import ApiKey, Team
from accounts.services import apikey_create
from rag.models import Collection, Document
from rag.selectors import Caller
from rag.services import documents_ingest
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import Reply, call, sse_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

EMBED = "demo/demo-embed"  # the fake upstream's: fast, and these tests are about who, not about ranking
TEXTS = {
    ("secrets", "code"): "The launch code of team A is 4242-ALPHA.",
    ("secrets", "meeting"): "Team A meets on Mondays to plan the week.",
    ("handbook", "lunch"): "Team A's handbook: lunch is served at noon in the blue room.",
    ("handbook", "leave"): "Team A's handbook: ask for leave two weeks ahead.",
    ("faq", "hours"): "Frequently asked: the office opens at eight in the morning.",
    ("faq", "parking"): "Frequently asked: visitors park behind the building.",
}
ALPHA_TEXTS = list(TEXTS.values())
ROLES = ["owner", "teammate", "other_team", "lone", "staff"]
READERS = {
    "secrets": {"owner", "teammate", "staff"},
    "handbook": {"owner", "teammate", "staff", "other_team"},
    "faq": set(ROLES),
}
WRITERS = {"owner", "teammate", "staff"}


@dataclass
class World:
    url: str
    raw: dict[str, str]  # role -> raw key
    keys: dict[str, ApiKey]

    def call(self, role: str, method: str, path: str, body: Any = None) -> Reply:
        return call(method, self.url + path, body, key=self.raw[role], timeout=120)

    def ask(self, role: str, collection: str, **extra: Any) -> Reply:
        body = {"query": "What do you know?", "collection": collection, "top_k": 4, "max_tokens": 3, **extra}
        return self.call(role, "POST", "/api/v1/rag", body)


def ingest_as(key: ApiKey, name: str, documents: dict[str, str]) -> Collection:
    """An ingest as the key would make it (the rule under test lives behind the service)."""
    ingested = documents_ingest(
        caller=Caller(key_id=key.pk, team_id=key.team_id, is_staff=key.is_staff),
        collection_name=name,
        documents=[{"id": doc_id, "title": doc_id, "text": text} for doc_id, text in documents.items()],
        embedding_model_id=EMBED,
    )
    return ingested.collection


def wait_indexed(*collections: Collection) -> None:
    pks = [c.pk for c in collections]

    def ready() -> bool:
        return Collection.objects.filter(pk__in=pks, status=Collection.Status.READY).count() == len(pks)

    assert wait_until(ready, timeout=60), list(Collection.objects.filter(pk__in=pks).values("name", "status"))


@pytest.fixture
def world(gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]) -> World:
    alpha, beta = Team.objects.create(name="alpha"), Team.objects.create(name="beta")
    made = {
        "owner": apikey_create(name="owner", team=alpha),
        "teammate": apikey_create(name="teammate", team=alpha),
        "other_team": apikey_create(name="other team", team=beta),
        "lone": apikey_create(name="lone"),
        "staff": apikey_create(name="staff", is_staff=True),
    }
    keys = {role: key for role, (key, _) in made.items()}
    collections = []
    for name in READERS:
        documents = {doc_id: text for (collection, doc_id), text in TEXTS.items() if collection == name}
        collections.append(ingest_as(keys["owner"], name, documents))
    Collection.objects.get(name="handbook").shared_with_teams.set([beta])
    Collection.objects.filter(name="faq").update(public_read=True)
    wait_indexed(*collections)
    fake.reset()
    return World(url=gateway.url, raw={role: raw for role, (_, raw) in made.items()}, keys=keys)


def texts_of(name: str) -> set[str]:
    return {text for (collection, _), text in TEXTS.items() if collection == name}


def assert_not_found(reply: Reply, code: str = "collection_not_found") -> None:
    assert reply.status == 404, reply.text
    assert reply.json()["error"]["code"] == code
    assert not any(text in reply.text for text in ALPHA_TEXTS), reply.text


def alpha_documents() -> dict[tuple[str, str], str]:
    rows = Document.objects.filter(collection__owner_team__name="alpha").values_list(
        "collection__name", "external_id", "text"
    )
    return {(name, doc_id): text for name, doc_id, text in rows}


# --- reads: query, stream, detail, list ---------------------------------------------------------------------


def test_a_query_answers_the_collections_readers_and_404s_everyone_else(world: World, fake: Fake) -> None:
    for role in ROLES:
        for name, readers in READERS.items():
            reply = world.ask(role, name)
            if role in readers:
                assert reply.status == 200, (role, name, reply.text)
                assert {s["text"] for s in reply.json()["sources"]} == texts_of(name), (role, name)
                assert "collection_status" not in reply.json()  # ready
            else:
                assert_not_found(reply)
    # A refused query reached no model: only the readers' queries were embedded and answered.
    allowed = sum(len(readers) for readers in READERS.values())
    assert fake.stats()["requests"] == {"demo-embed": allowed, "demo-fast": allowed}


def test_a_streamed_query_follows_the_same_rule(world: World) -> None:
    for role in ROLES:
        for name, readers in READERS.items():
            reply = world.ask(role, name, stream=True)
            if role in readers:
                assert reply.status == 200, (role, name, reply.text)
                events = sse_events(reply)
                assert events[0]["type"] == "sources"
                assert {s["text"] for s in events[0]["sources"]} == texts_of(name)
                assert events[-1]["type"] == "complete"
            else:
                assert_not_found(reply)


def test_the_detail_view_shows_a_collection_to_its_readers_only(world: World) -> None:
    for role in ROLES:
        for name, readers in READERS.items():
            reply = world.call(role, "GET", f"/api/v1/rag/collections/{name}")
            if role not in readers:
                assert_not_found(reply)
                continue
            assert reply.status == 200, (role, name, reply.text)
            body = reply.json()
            assert (body["name"], body["owner"], body["documents"], body["status"]) == (name, "team:alpha", 2, "ready")
            # Who else reads it is shown to those who manage it only.
            expected_sharing = (["beta"] if name == "handbook" else []) if role in WRITERS else None
            assert body["shared_with_teams"] == expected_sharing, (role, name)
            assert body["public_read"] is (name == "faq")


def test_the_list_holds_what_the_key_may_read_and_nothing_else(world: World) -> None:
    for role in ROLES:
        reply = world.call(role, "GET", "/api/v1/rag/collections")
        assert reply.status == 200, reply.text
        expected = sorted(name for name, readers in READERS.items() if role in readers)
        assert [c["name"] for c in reply.json()["data"]] == expected, role
        for name in set(READERS) - set(expected):
            assert f'"{name}"' not in reply.text


# --- writes: ingest, replace, delete, share -------------------------------------------------------------------


def test_an_ingest_writes_into_the_callers_own_collection_never_into_another_owners(world: World) -> None:
    before = alpha_documents()
    for role, owner in (("other_team", "team:beta"), ("lone", f"key:{world.keys['lone'].prefix}"), ("staff", "staff")):
        reply = world.call(
            role, "POST", "/api/v1/rag/collections/secrets/documents", {"documents": [{"id": "new", "text": role}]}
        )
        assert reply.status == 202, (role, reply.text)
        body = reply.json()
        # A collection of its own, holding only what it sent.
        assert (body["collection"]["owner"], body["collection"]["documents"]) == (owner, 1), role
        assert body["documents"] == [{"id": "new", "title": "", "chunks": 1, "replaced": False}]
        assert not any(text in reply.text for text in ALPHA_TEXTS)
    assert alpha_documents() == before
    assert Collection.objects.filter(name="secrets").count() == 4

    # A key of the team writes into the team's collection.
    reply = world.call(
        "teammate", "POST", "/api/v1/rag/collections/secrets/documents", {"documents": [{"id": "new", "text": "mate"}]}
    )
    assert reply.status == 202, reply.text
    assert (reply.json()["collection"]["owner"], reply.json()["collection"]["documents"]) == ("team:alpha", 3)

    # A key that only reads a collection (shared, public) cannot write into it by naming its owner.
    for role, name in (("other_team", "handbook"), ("lone", "faq"), ("lone", "secrets")):
        reply = world.call(
            role,
            "POST",
            f"/api/v1/rag/collections/{name}/documents?owner=team:alpha",
            {"documents": [{"id": "x", "text": "intruder"}]},
        )
        assert_not_found(reply, "owner_not_found")
    assert not Document.objects.filter(text="intruder").exists()

    # Every new collection is indexed on its own: the team's index saw the teammate's document only.
    wait_indexed(*Collection.objects.filter(name="secrets"))
    ours = world.ask("other_team", "secrets").json()
    assert [s["text"] for s in ours["sources"]] == ["other_team"]


def test_a_replace_changes_the_owners_document_only_for_its_writers(world: World) -> None:
    replacement = {"documents": [{"id": "code", "text": "The launch code is now withdrawn."}]}
    for role in ("other_team", "lone"):
        reply = world.call(role, "POST", "/api/v1/rag/collections/secrets/documents", replacement)
        assert reply.status == 202, reply.text
        assert reply.json()["documents"][0]["replaced"] is False  # its own new collection
        assert alpha_documents()[("secrets", "code")] == TEXTS[("secrets", "code")]

    for role, query in (("owner", ""), ("teammate", ""), ("staff", "?owner=team:alpha")):
        text = f"Replaced by {role}."
        reply = world.call(
            role,
            "POST",
            f"/api/v1/rag/collections/secrets/documents{query}",
            {"documents": [{"id": "code", "text": text}]},
        )
        assert reply.status == 202, (role, reply.text)
        assert reply.json()["collection"]["owner"] == "team:alpha"
        assert reply.json()["documents"] == [{"id": "code", "title": "", "chunks": 1, "replaced": True}]
        assert alpha_documents()[("secrets", "code")] == text


def test_a_document_is_deleted_by_its_collections_writers_only_and_the_index_follows(world: World) -> None:
    before = alpha_documents()
    for role in ("other_team", "lone"):
        for name, doc_id in (("secrets", "code"), ("handbook", "lunch"), ("faq", "hours")):
            assert_not_found(world.call(role, "DELETE", f"/api/v1/rag/collections/{name}/documents/{doc_id}"))
    assert alpha_documents() == before

    for role, name, doc_id in (
        ("owner", "secrets", "code"),
        ("teammate", "handbook", "lunch"),
        ("staff", "faq", "hours"),
    ):
        reply = world.call(role, "DELETE", f"/api/v1/rag/collections/{name}/documents/{doc_id}")
        assert reply.status == 204, (role, reply.text)
        assert (name, doc_id) not in alpha_documents()
        # The new index is published with the deletion: the next answer cites the other document only.
        answer = world.ask(role, name)
        assert answer.status == 200, answer.text
        assert [s["text"] for s in answer.json()["sources"]] == [
            text for (collection, other), text in TEXTS.items() if collection == name and other != doc_id
        ]
        assert "collection_status" not in answer.json()

    missing = world.call("owner", "DELETE", "/api/v1/rag/collections/secrets/documents/code")
    assert_not_found(missing, "document_not_found")


def test_a_collection_is_deleted_by_its_writers_only_with_its_index(world: World) -> None:
    for role in ("other_team", "lone"):
        for name in READERS:
            assert_not_found(world.call(role, "DELETE", f"/api/v1/rag/collections/{name}"))
    assert Collection.objects.count() == 3

    for role, name in (("owner", "secrets"), ("teammate", "handbook"), ("staff", "faq")):
        uid = Collection.objects.get(name=name).uid
        assert list(Path(settings.RAG_INDEX_DIR).glob(f"{uid}-v*.faiss")), "no index to delete"
        reply = world.call(role, "DELETE", f"/api/v1/rag/collections/{name}")
        assert reply.status == 204, (role, reply.text)
        assert not Collection.objects.filter(name=name).exists()
        assert not Document.objects.filter(collection__name=name).exists()
        assert list(Path(settings.RAG_INDEX_DIR).glob(f"{uid}-v*.faiss")) == []
        assert_not_found(world.ask(role, name))


def test_sharing_is_set_by_the_owner_or_staff_and_takes_effect(world: World) -> None:
    for role, name in (("other_team", "handbook"), ("other_team", "secrets"), ("lone", "faq")):
        reply = world.call(role, "PATCH", f"/api/v1/rag/collections/{name}", {"public_read": True})
        assert_not_found(reply)
    assert list(Collection.objects.filter(public_read=True).values_list("name", flat=True)) == ["faq"]

    reply = world.call("owner", "PATCH", "/api/v1/rag/collections/secrets", {"shared_with_teams": ["beta"]})
    assert reply.status == 200, reply.text
    assert (reply.json()["shared_with_teams"], reply.json()["public_read"]) == (["beta"], False)
    assert world.ask("other_team", "secrets").status == 200
    assert_not_found(world.ask("lone", "secrets"))

    reply = world.call("teammate", "PATCH", "/api/v1/rag/collections/handbook", {"public_read": True})
    assert (reply.status, reply.json()["public_read"], reply.json()["shared_with_teams"]) == (200, True, ["beta"])
    assert world.ask("lone", "handbook").status == 200

    reply = world.call("staff", "PATCH", "/api/v1/rag/collections/faq", {"public_read": False})
    assert (reply.status, reply.json()["public_read"]) == (200, False)
    assert_not_found(world.ask("lone", "faq"))

    reply = world.call("owner", "PATCH", "/api/v1/rag/collections/secrets", {"shared_with_teams": ["beta", "gamma"]})
    assert reply.status == 400, reply.text
    assert (reply.json()["error"]["code"], reply.json()["error"]["param"]) == ("unknown_team", "shared_with_teams")
    assert [t.name for t in Collection.objects.get(name="secrets").shared_with_teams.all()] == ["beta"]


# --- names: per owner, own first, ?owner= ---------------------------------------------------------------------


def test_two_teams_each_have_their_own_docs(world: World) -> None:
    for role in ("owner", "other_team"):
        reply = world.call(
            role, "POST", "/api/v1/rag/collections/docs/documents", {"documents": [{"id": "d", "text": f"{role} doc"}]}
        )
        assert reply.status == 202, reply.text
    wait_indexed(*Collection.objects.filter(name="docs"))
    for role in ("owner", "teammate", "other_team"):
        sources = world.ask(role, "docs").json()["sources"]
        assert [s["text"] for s in sources] == ["other_team doc" if role == "other_team" else "owner doc"]
    assert_not_found(world.ask("lone", "docs"))

    # Staff see both: the bare name is ambiguous for them, ?owner= picks one.
    reply = world.call("staff", "GET", "/api/v1/rag/collections/docs")
    assert reply.status == 409, reply.text
    error = reply.json()["error"]
    assert (error["code"], error["param"]) == ("ambiguous_collection", "owner")
    assert "team:alpha, team:beta" in error["message"]
    reply = world.call("staff", "GET", "/api/v1/rag/collections/docs?owner=team:beta")
    assert (reply.status, reply.json()["owner"]) == (200, "team:beta")
    sources = world.ask("staff", "docs", stream=False)
    assert sources.status == 409
    answer = call(
        "POST",
        world.url + "/api/v1/rag?owner=team:beta",
        {"query": "q", "collection": "docs", "max_tokens": 3},
        key=world.raw["staff"],
    )
    assert [s["text"] for s in answer.json()["sources"]] == ["other_team doc"]


def test_the_callers_own_collection_wins_over_one_shared_with_it(world: World) -> None:
    reply = world.call(
        "other_team",
        "POST",
        "/api/v1/rag/collections/handbook/documents",
        {"documents": [{"id": "ours", "text": "Team B's own handbook."}]},
    )
    assert reply.status == 202, reply.text
    wait_indexed(*Collection.objects.filter(name="handbook"))
    sources = world.ask("other_team", "handbook").json()["sources"]
    assert [s["text"] for s in sources] == ["Team B's own handbook."]
    # The shared one is still reachable by naming its owner.
    reply = call(
        "POST",
        world.url + "/api/v1/rag?owner=team:alpha",
        {"query": "q", "collection": "handbook", "top_k": 4, "max_tokens": 3},
        key=world.raw["other_team"],
    )
    assert {s["text"] for s in reply.json()["sources"]} == texts_of("handbook")


def test_owner_names_an_owner_and_never_reaches_past_what_the_key_may_read(world: World) -> None:
    assert_not_found(world.call("lone", "GET", "/api/v1/rag/collections/secrets?owner=team:alpha"))
    assert_not_found(world.call("other_team", "GET", "/api/v1/rag/collections/faq?owner=team:beta"))
    reply = world.call("owner", "GET", "/api/v1/rag/collections/secrets?owner=alpha")
    assert reply.status == 400, reply.text
    assert (reply.json()["error"]["code"], reply.json()["error"]["param"]) == ("invalid_owner", "owner")
    listed = world.call("staff", "GET", "/api/v1/rag/collections?owner=team:alpha").json()["data"]
    assert [c["name"] for c in listed] == ["faq", "handbook", "secrets"]
