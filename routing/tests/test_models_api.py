"""``GET /v1/models/<id>``, driven by the official ``openai`` SDK over real HTTP: every id the list holds."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from accounts.services import apikey_create
from routing.models import LLMModel, Provider
from routing.services import routing_changed
from tests.fixtures import Gateway
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key=apikey_create(name="sdk")[1], max_retries=0, timeout=30)


def test_it_retrieves_every_model_the_list_holds(gateway: Gateway) -> None:
    # A name at its provider may hold slashes: the SDK sends them encoded (%2F), as one path segment.
    LLMModel.objects.create(provider=Provider.objects.get(name="demo"), name="meta-llama/llama-3-8b:free")
    routing_changed()
    client = sdk(gateway)

    listed = list(client.models.list())
    retrieved = [client.models.retrieve(model.id) for model in listed]

    assert [model.id for model in listed] == [
        "router",
        "auto",
        "code",
        "conversation",
        "reasoning",
        "tools",
        "demo/demo-embed",
        "demo/demo-fast",
        "demo/demo-smart",
        "demo/meta-llama/llama-3-8b:free",
        "local/all-minilm-l6-v2",
    ]
    assert [model.model_dump() for model in retrieved] == [model.model_dump() for model in listed]
    assert client.models.retrieve("demo/demo-fast").model_dump(exclude_none=True) == {
        "id": "demo/demo-fast",
        "object": "model",
        "created": 0,
        "owned_by": "demo",
    }
    assert client.models.retrieve("code").owned_by == "spignosapi"


def test_an_unknown_model_is_a_404_in_the_openai_envelope(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway).models.retrieve("demo/nope")

    assert caught.value.status_code == 404
    assert caught.value.body == {
        "message": "The model 'demo/nope' does not exist.",
        "type": "not_found_error",
        "code": "model_not_found",
        "param": "model",
    }
    assert call("GET", gateway.url + "/v1/models/nope").status == 401  # a key first, as for the list
    unknown = call("GET", gateway.url + "/v1/models/nope", key=apikey_create(name="k")[1])
    assert (unknown.status, unknown.json()["error"]["code"]) == (404, "model_not_found")
