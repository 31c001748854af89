"""RAG end to end with the real MiniLM model: ingest over HTTP, a real worker embeds and indexes, queries
rank the right document first, answers cite their sources through the fake upstream, and the index
survives a restart of the web process and the loss of its file."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.services import apikey_create
from ledger.models import UsageRecord
from rag import index
from rag.models import Chunk, Collection, Document
from tests.fixtures import Fake, Gateway, _stop, start_gateway
from tests.helpers import wait_until
from tests.http import Reply, call, sse_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

CORPUS = [
    {
        "id": "volcanoes",
        "title": "Volcanoes",
        "text": "A volcano is an opening in the crust of a planet through which lava, volcanic ash and gases "
        "escape from a magma chamber below the surface. Eruptions can be explosive or effusive.",
    },
    {
        "id": "sourdough",
        "title": "Sourdough bread",
        "text": "Sourdough bread is made by fermenting dough with wild yeast and lactic acid bacteria. "
        "Bakers keep a starter culture alive by feeding it flour and water every day.",
    },
    {
        "id": "tides",
        "title": "Ocean tides",
        "text": "Tides are the rise and fall of sea levels caused by the gravitational pull of the Moon and "
        "the Sun on the oceans of the Earth. Most coasts see two high tides a day.",
    },
    {
        "id": "chess",
        "title": "Chess openings",
        "text": "In chess, the Sicilian Defence is a popular reply to the king's pawn opening. White and "
        "Black fight for control of the centre of the board in the first moves.",
    },
]
QUERIES = {
    "What makes the sea go up and down along the beach?": "tides",
    "How do I keep my yeast starter alive for baking?": "sourdough",
    "Where does molten rock come out of a mountain?": "volcanoes",
    "What is a good answer when my opponent opens with e4?": "chess",
}


@pytest.fixture
def raw(gateway: Gateway, celery_worker: subprocess.Popen[bytes]) -> str:
    return apikey_create(name="k")[1]


def post(gateway: Gateway, raw: str, path: str, body: dict[str, Any]) -> Reply:
    return call("POST", gateway.url + path, body, key=raw, timeout=120)


def ingest(gateway: Gateway, raw: str, documents: list[dict[str, str]], name: str = "kb") -> dict[str, Any]:
    reply = post(gateway, raw, f"/api/v1/rag/collections/{name}/documents", {"documents": documents})
    assert reply.status == 202, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_ready(gateway: Gateway, raw: str, name: str = "kb", version: int = 1) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def ready() -> bool:
        state.update(call("GET", f"{gateway.url}/api/v1/rag/collections/{name}", key=raw).json())
        return bool(state["status"] == "ready" and state["index_version"] >= version)

    assert wait_until(ready, timeout=120), state
    return state


def rag(gateway: Gateway, raw: str, query: str, **body: object) -> Reply:
    return post(gateway, raw, "/api/v1/rag", {"query": query, "collection": "kb", "max_tokens": 5, **body})


def test_each_query_finds_its_document_and_the_answer_cites_it(gateway: Gateway, fake: Fake, raw: str) -> None:
    accepted = ingest(gateway, raw, CORPUS)
    assert [(d["id"], d["chunks"], d["replaced"]) for d in accepted["documents"]] == [
        ("volcanoes", 1, False),
        ("sourdough", 1, False),
        ("tides", 1, False),
        ("chess", 1, False),
    ]
    assert (accepted["collection"]["status"], accepted["collection"]["embedding_model"]) == (
        "indexing",
        "local/all-minilm-l6-v2",
    )
    state = wait_ready(gateway, raw)
    assert (state["documents"], state["chunks"], state["embedded_chunks"], state["dimensions"]) == (4, 4, 4, 384)

    for query, expected in QUERIES.items():
        reply = rag(gateway, raw, query, top_k=2)
        assert reply.status == 200, reply.text
        body = reply.json()
        sources = body["sources"]
        assert [s["document"] for s in sources][:1] == [expected], (query, sources)
        assert len(sources) == 2 and sources[0]["score"] > sources[1]["score"]
        top = next(d for d in CORPUS if d["id"] == expected)
        assert (sources[0]["title"], sources[0]["chunk"], sources[0]["text"]) == (top["title"], 0, top["text"])
        # The routed model was asked with the sources in its system prompt, numbered for citation.
        last = fake.stats()["last"]
        assert isinstance(last, dict)
        sent = last[body["meta"]["model"].split("/", 1)[1]]["messages"]
        assert sent[-1] == {"role": "user", "content": query}
        assert f"[1] {top['title']} (document {expected}, chunk 0):\n{top['text']}" in sent[0]["content"]
        assert body["output"] and body["meta"]["completion_tokens"] == 5

    record = UsageRecord.objects.filter(request_id=reply.headers["x-request-id"])
    assert wait_until(record.exists, timeout=10)
    assert record.get().endpoint == "rag"


def test_a_streamed_answer_starts_with_its_sources(gateway: Gateway, fake: Fake, raw: str) -> None:
    ingest(gateway, raw, CORPUS)
    wait_ready(gateway, raw)
    events = sse_events(rag(gateway, raw, "Why are there two high tides a day?", top_k=1, stream=True))
    assert events[0]["type"] == "sources"
    assert [s["document"] for s in events[0]["sources"]] == ["tides"]
    assert {e["type"] for e in events[1:-1]} == {"chunk"}
    assert events[-1]["type"] == "complete" and events[-1]["meta"]["completion_tokens"] == 5


def test_replacing_a_document_reindexes_it(gateway: Gateway, fake: Fake, raw: str) -> None:
    ingest(gateway, raw, CORPUS)
    wait_ready(gateway, raw)
    replaced = ingest(
        gateway,
        raw,
        [
            {
                "id": "chess",
                "title": "Knitting",
                "text": "Knitting turns yarn into fabric with two needles, loop by loop, into scarves and sweaters.",
            }
        ],
    )
    assert replaced["documents"] == [{"id": "chess", "title": "Knitting", "chunks": 1, "replaced": True}]
    state = wait_ready(gateway, raw, version=2)
    assert (state["documents"], state["chunks"], state["embedded_chunks"]) == (4, 4, 4)
    sources = rag(gateway, raw, "How do I make a woollen scarf?", top_k=1).json()["sources"]
    assert [(s["document"], s["title"]) for s in sources] == [("chess", "Knitting")]


def test_the_index_survives_a_restart_and_the_loss_of_its_file(gateway: Gateway, fake: Fake, raw: str) -> None:
    ingest(gateway, raw, CORPUS)
    state = wait_ready(gateway, raw)
    collection = Collection.objects.get(name="kb")
    path = Path(settings.RAG_INDEX_DIR) / f"{collection.uid}-v{state['index_version']}.faiss"
    assert path.exists(), "the worker did not write the index"
    before = rag(gateway, raw, "Where does molten rock come out of a mountain?").json()["sources"]

    # A new web process reads the index from disk.
    second = start_gateway()
    try:
        after = call(
            "POST",
            second.url + "/api/v1/rag",
            {"query": "Where does molten rock come out of a mountain?", "collection": "kb", "max_tokens": 5},
            key=raw,
            timeout=120,
        ).json()["sources"]
    finally:
        _stop(second.proc)
    assert after == before

    # Without its file (a new host, a wiped disk) the index is rebuilt from the vectors in the database.
    path.unlink()
    index.forget()
    rebuilt: Any = index.load(collection)  # an IndexIDMap2: its ids are the chunks' primary keys
    assert rebuilt.ntotal == 4 and path.exists()
    chunk_pks = set(Chunk.objects.filter(document__collection=collection).values_list("pk", flat=True))
    assert {int(rebuilt.id_map.at(i)) for i in range(rebuilt.ntotal)} == chunk_pks


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"documents": []}, "empty", "documents"),
        ({"documents": [{"title": "no text"}]}, "required", "documents.0.text"),
        ({"documents": [{"text": "   "}]}, "blank", "documents.0.text"),
        ({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, "duplicate_id", "documents"),
        ({"documents": "text"}, "not_a_list", "documents"),
        (
            {"documents": [{"text": "x"}], "embedding_model": "demo/demo-fast"},
            "not_an_embedding_model",
            "embedding_model",
        ),
    ],
)
def test_bad_ingests_are_refused_and_store_nothing(
    gateway: Gateway, raw: str, body: dict[str, Any], code: str, param: str
) -> None:
    reply = post(gateway, raw, "/api/v1/rag/collections/kb/documents", body)
    assert reply.status == 400, reply.text
    assert (reply.json()["error"]["code"], reply.json()["error"]["param"]) == (code, param)
    assert (Collection.objects.count(), Document.objects.count()) == (0, 0)


def test_a_failing_embedding_model_marks_the_collection_failed(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-embed": {"status": 400}})
    reply = post(
        gateway,
        raw,
        "/api/v1/rag/collections/remote/documents",
        {"documents": [{"id": "a", "text": "some text"}], "embedding_model": "demo/demo-embed"},
    )
    assert reply.status == 202, reply.text
    state: dict[str, Any] = {}

    def failed() -> bool:
        state.update(call("GET", f"{gateway.url}/api/v1/rag/collections/remote", key=raw).json())
        return bool(state["status"] == "failed")

    assert wait_until(failed, timeout=30), state
    assert state["last_error"].startswith("The upstream model refused the request")
    assert (state["chunks"], state["embedded_chunks"], state["index_version"]) == (1, 0, 0)


def test_rag_on_an_unknown_collection_is_a_404(gateway: Gateway, fake: Fake, raw: str) -> None:
    reply = rag(gateway, raw, "anything")
    assert reply.status == 404
    assert (reply.json()["error"]["code"], reply.json()["error"]["param"]) == ("collection_not_found", "collection")
    assert fake.stats()["requests"] == {}


# --- a query on a collection that is not ready (issue 18, item 8) ---------------------------------------------
# Pending chunks are made row by row: no task is queued for them, so no worker races the state under test.


@pytest.fixture
def owner(gateway: Gateway, celery_worker: subprocess.Popen[bytes]) -> tuple[Any, str]:
    return apikey_create(name="owner")


def indexing_collection(key: Any, *texts: str, embedded: int) -> Collection:
    """A collection of ``texts`` whose first ``embedded`` the worker has indexed, the rest pending."""
    from rag.services import documents_store

    collection = Collection.objects.create(name="kb", owner_key=key, embedding_model="demo/demo-embed")
    if embedded:
        documents_store(
            collection=collection,
            documents=[{"id": f"d{i}", "text": text} for i, text in enumerate(texts[:embedded])],
        )
        assert wait_until(lambda: Collection.objects.get(pk=collection.pk).status == "ready", timeout=60)
    for i, text in enumerate(texts[embedded:], start=embedded):
        document = Document.objects.create(collection=collection, external_id=f"d{i}", text=text)
        Chunk.objects.create(document=document, index=0, start=0, text=text)
    Collection.objects.filter(pk=collection.pk).update(status=Collection.Status.INDEXING)
    return collection


def test_a_query_while_nothing_is_indexed_yet_is_a_409_with_retry_after(
    gateway: Gateway, fake: Fake, owner: tuple[Any, str]
) -> None:
    indexing_collection(owner[0], "Tides follow the Moon.", embedded=0)
    for stream in (False, True):
        reply = rag(gateway, owner[1], "Why are there tides?", stream=stream)
        assert reply.status == 409, reply.text
        assert (reply.json()["error"]["code"], reply.json()["error"]["param"]) == ("collection_not_ready", "collection")
        assert reply.headers["retry-after"] == "5"
    assert fake.stats()["requests"] == {}


def test_a_query_while_indexing_says_so_and_searches_what_is_indexed(
    gateway: Gateway, fake: Fake, owner: tuple[Any, str]
) -> None:
    indexing_collection(owner[0], "Tides follow the Moon.", "Bread needs yeast.", embedded=1)
    body = rag(gateway, owner[1], "Why are there tides?").json()
    assert (body["collection_status"], body["collection_progress"]) == ("indexing", {"chunks": 2, "embedded_chunks": 1})
    assert [s["text"] for s in body["sources"]] == ["Tides follow the Moon."]

    events = sse_events(rag(gateway, owner[1], "Why are there tides?", stream=True))
    assert [s["text"] for s in events[0]["sources"]] == ["Tides follow the Moon."]
    assert events[1:3] == [
        {"type": "collection_status", "collection_status": "indexing"},
        {"type": "collection_progress", "collection_progress": {"chunks": 2, "embedded_chunks": 1}},
    ]
    assert events[-1]["type"] == "complete"


def test_a_query_on_a_collection_whose_indexing_failed_with_nothing_indexed_is_a_409(
    gateway: Gateway, fake: Fake, owner: tuple[Any, str]
) -> None:
    collection = indexing_collection(owner[0], "Tides follow the Moon.", embedded=0)
    Collection.objects.filter(pk=collection.pk).update(status=Collection.Status.FAILED, last_error="model down")
    reply = rag(gateway, owner[1], "Why are there tides?")
    assert reply.status == 409, reply.text
    assert reply.json()["error"]["code"] == "collection_not_ready"
    assert "failed (model down)" in reply.json()["error"]["message"]
    assert "retry-after" not in reply.headers  # it will not become ready by waiting
