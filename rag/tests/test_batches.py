"""Large embedding requests on a real Celery worker: ``/api/v1/embeddings/batches``."""

from __future__ import annotations

import base64
import struct
import subprocess
from typing import Any

import pytest

from accounts.services import apikey_create
from ledger.models import UsageRecord
from rag.models import EmbeddingBatch
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import Reply, call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def raw(gateway: Gateway, celery_worker: subprocess.Popen[bytes]) -> str:
    return apikey_create(name="k")[1]


def submit(gateway: Gateway, raw: str, **body: object) -> Reply:
    return call("POST", gateway.url + "/api/v1/embeddings/batches", body, key=raw)


def read(gateway: Gateway, raw: str, batch_id: str, query: str = "") -> Reply:
    return call("GET", f"{gateway.url}/api/v1/embeddings/batches/{batch_id}{query}", key=raw)


def finished(gateway: Gateway, raw: str, batch_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def done() -> bool:
        state.update(read(gateway, raw, batch_id).json())
        return state["status"] in ("succeeded", "failed")

    assert wait_until(done, timeout=60), state
    return state


def test_a_batch_is_embedded_by_the_worker_in_order(gateway: Gateway, fake: Fake, raw: str) -> None:
    texts = [f"sentence {i}" for i in range(3000)]  # more than one request may carry
    accepted = submit(gateway, raw, model="demo/demo-embed", input=texts)
    assert accepted.status == 202, accepted.text
    body = accepted.json()
    assert (body["object"], body["status"], body["model"], body["inputs"], body["finished_at"]) == (
        "embedding.batch",
        "queued",
        "demo/demo-embed",
        3000,
        None,
    )
    state = finished(gateway, raw, body["id"])
    assert state["status"] == "succeeded"
    assert [row["index"] for row in state["data"]] == list(range(3000))
    # 64 inputs per upstream call.
    assert fake.stats()["requests"] == {"demo-embed": 47}
    direct = call(
        "POST", gateway.url + "/api/v1/embeddings", {"model": "demo/demo-embed", "input": texts[2999]}, key=raw
    )
    assert state["data"][2999]["embedding"] == direct.json()["data"][0]["embedding"]
    assert state["usage"]["prompt_tokens"] == state["usage"]["total_tokens"] > 0
    # The same result as base64 float32, as the OpenAI SDK reads it.
    encoded = read(gateway, raw, body["id"], "?encoding_format=base64").json()["data"][0]["embedding"]
    decoded = struct.unpack("<64f", base64.b64decode(encoded))
    assert max(abs(a - b) for a, b in zip(decoded, state["data"][0]["embedding"], strict=True)) < 1e-6
    batch = EmbeddingBatch.objects.get(pk=body["id"])
    assert (batch.deliveries, batch.dimensions, batch.prompt_tokens) == (1, 64, state["usage"]["prompt_tokens"])
    record = UsageRecord.objects.filter(request_id=f"batch-{body['id']}")
    assert wait_until(record.exists, timeout=10)
    assert (record.get().endpoint, record.get().prompt_tokens) == ("embeddings_batch", batch.prompt_tokens)


def test_a_batch_is_visible_to_its_key_only(gateway: Gateway, fake: Fake, raw: str) -> None:
    body = submit(gateway, raw, model="demo/demo-embed", input=["a", "b"]).json()
    other = apikey_create(name="other")[1]
    missing = read(gateway, other, body["id"])
    assert (missing.status, missing.json()["error"]["code"]) == (404, "batch_not_found")
    unknown = read(gateway, raw, "00000000-0000-0000-0000-000000000000")
    assert (unknown.status, unknown.json()["error"]["code"]) == (404, "batch_not_found")
    assert finished(gateway, raw, body["id"])["status"] == "succeeded"


def test_a_failing_model_fails_the_batch_with_the_error(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-embed": {"status": 400}})
    body = submit(gateway, raw, model="demo/demo-embed", input=["a"]).json()
    state = finished(gateway, raw, body["id"])
    assert state["status"] == "failed" and "data" not in state
    assert (state["error"]["type"], state["error"]["code"]) == ("invalid_request_error", "upstream_bad_request")


def test_an_upstream_error_no_retry_can_mend_fails_the_batch_on_its_first_delivery(
    gateway: Gateway, fake: Fake, raw: str
) -> None:
    fake.configure(**{"demo-embed": {"status": 401}})  # the upstream refuses the platform's credentials
    body = submit(gateway, raw, model="demo/demo-embed", input=["a"]).json()
    state = finished(gateway, raw, body["id"])
    assert (state["status"], state["error"]["type"], state["error"]["code"]) == (
        "failed",
        "upstream_error",
        "upstream_authentication_failed",
    )
    assert EmbeddingBatch.objects.get(pk=body["id"]).deliveries == 1
    assert fake.stats()["requests"] == {"demo-embed": 1}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"input": []}, 400, "empty"),
        ({"input": [1, 2]}, 400, "invalid_type"),
        ({"input": ["x"], "model": "demo/demo-fast"}, 400, "not_an_embedding_model"),
        ({"input": ["x"], "model": "nope/nope"}, 404, "model_not_found"),
    ],
)
def test_bad_batches_are_refused_and_store_nothing(
    gateway: Gateway, raw: str, body: dict[str, Any], status: int, code: str
) -> None:
    reply = submit(gateway, raw, **body)
    assert (reply.status, reply.json()["error"]["code"]) == (status, code)
    assert EmbeddingBatch.objects.count() == 0
