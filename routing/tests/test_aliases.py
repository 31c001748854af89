"""Model aliases (issue 15 item 4): the staff API over real HTTP, then the official ``openai`` SDK sending the
names agent CLIs insist on and landing where the alias points (answer, route header, usage record)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from accounts.services import apikey_create
from ledger.models import UsageRecord
from routing.models import Category, LLMModel, ModelAlias
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway
from tests.helpers import wait_until
from tests.http import Reply, call

pytestmark = pytest.mark.django_db(transaction=True)

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def staff(gateway: Gateway) -> str:
    return apikey_create(name="staff", is_staff=True)[1]


def api(gateway: Gateway, method: str, path: str, body: Any = None, *, key: str | None) -> Reply:
    return call(method, gateway.url + "/api/v1/routing/" + path, body, key=key)


def create(gateway: Gateway, staff: str, name: str, target: str) -> dict[str, Any]:
    reply = api(gateway, "POST", "aliases", {"name": name, "target": target}, key=staff)
    assert reply.status == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def listed(gateway: Gateway, staff: str) -> list[dict[str, Any]]:
    reply = api(gateway, "GET", "aliases", key=staff)
    assert reply.status == 200, reply.text
    aliases: list[dict[str, Any]] = reply.json()["aliases"]
    return aliases


def sdk(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key=apikey_create(name="sdk")[1], max_retries=0, timeout=30)


def upstream_text(fake: Fake, model: str, max_tokens: int) -> str | None:
    """What the fake upstream itself answers ``HELLO`` with: the text the gateway must relay unchanged."""
    direct = OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    return direct.chat.completions.create(model=model, messages=HELLO, max_tokens=max_tokens).choices[0].message.content


def error(reply: Reply) -> dict[str, Any]:
    body: dict[str, Any] = reply.json()["error"]
    return body


# --- the staff API ------------------------------------------------------------------------------------------


def test_it_creates_lists_retargets_and_deletes_an_alias(gateway: Gateway, staff: str) -> None:
    assert listed(gateway, staff) == []
    assert create(gateway, staff, "claude-sonnet-4-5", "code") == {
        "name": "claude-sonnet-4-5",
        "target": "code",
        "kind": "category",
    }
    assert create(gateway, staff, "gpt-5", "demo/demo-fast") == {
        "name": "gpt-5",
        "target": "demo/demo-fast",
        "kind": "model",
    }

    retargeted = api(gateway, "POST", "aliases", {"name": "gpt-5", "target": "reasoning"}, key=staff)
    assert (retargeted.status, retargeted.json()) == (200, {"name": "gpt-5", "target": "reasoning", "kind": "category"})
    expected = [
        {"name": "claude-sonnet-4-5", "target": "code", "kind": "category"},
        {"name": "gpt-5", "target": "reasoning", "kind": "category"},
    ]
    assert listed(gateway, staff) == expected
    config = api(gateway, "GET", "config", key=staff).json()
    assert config["aliases"] == expected
    gpt5 = ModelAlias.objects.get(name="gpt-5")
    assert (gpt5.category, gpt5.model) == (Category.objects.get(name="reasoning"), None)

    deleted = api(gateway, "DELETE", "aliases/gpt-5", key=staff)
    assert (deleted.status, deleted.text) == (204, "")
    assert listed(gateway, staff) == expected[:1]
    missing = api(gateway, "DELETE", "aliases/gpt-5", key=staff)
    assert (missing.status, error(missing)) == (
        404,
        {
            "message": "The model alias 'gpt-5' does not exist.",
            "type": "not_found_error",
            "code": "alias_not_found",
            "param": None,
        },
    )


@pytest.mark.parametrize(
    "name", ["claude-3.5-sonnet", "llama3.1:8b", "claude-3-5-sonnet@20240620", "anthropic/claude-sonnet-4.5"]
)
def test_a_name_may_hold_dots_colons_at_signs_and_slashes(gateway: Gateway, staff: str, name: str) -> None:
    assert create(gateway, staff, name, "code")["name"] == name
    assert listed(gateway, staff) == [{"name": name, "target": "code", "kind": "category"}]
    assert api(gateway, "DELETE", f"aliases/{name}", key=staff).status == 204
    assert not ModelAlias.objects.exists()


NAME_FORM = "Letters, digits and - _ . : @, starting with a letter or digit; single slashes may separate parts."


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gpt 5", NAME_FORM),
        (" gpt-5", NAME_FORM),
        ("-gpt-5", NAME_FORM),
        ("a//b", NAME_FORM),
        ("gpt-5/", NAME_FORM),
        ("gpt-5\n", NAME_FORM),
        ("gpt-5?x=1", NAME_FORM),
        ("é", NAME_FORM),
        ("", "name: This field may not be blank."),
        ("x" * 101, "name: Ensure this field has no more than 100 characters."),
    ],
)
def test_a_malformed_name_is_a_400(gateway: Gateway, staff: str, name: str, message: str) -> None:
    reply = api(gateway, "POST", "aliases", {"name": name, "target": "code"}, key=staff)
    assert reply.status == 400, reply.text
    assert (error(reply)["type"], error(reply)["param"], error(reply)["message"]) == (
        "invalid_request_error",
        "name",
        message,
    )
    assert not ModelAlias.objects.exists()


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"name": "gpt-5"}, "target", "target: This field is required."),
        ({"target": "code"}, "name", "name: This field is required."),
        ({"name": 5, "target": "code"}, "name", "name: Not a valid string."),
        ({"name": "gpt-5", "target": ["code"]}, "target", "target: Not a valid string."),
    ],
)
def test_a_missing_or_mistyped_field_is_a_400(
    gateway: Gateway, staff: str, body: dict[str, Any], param: str, message: str
) -> None:
    reply = api(gateway, "POST", "aliases", body, key=staff)
    assert reply.status == 400, reply.text
    assert (error(reply)["type"], error(reply)["param"], error(reply)["message"]) == (
        "invalid_request_error",
        param,
        message,
    )
    assert not ModelAlias.objects.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("router", "'router' is reserved: it asks for the router."),
        ("auto", "'auto' is reserved: it asks for the router."),
        ("code", "'code' is a category: an alias cannot shadow it."),
        ("demo/demo-fast", "'demo/demo-fast' is a model: an alias cannot shadow it."),
    ],
)
def test_an_alias_cannot_shadow_the_router_a_category_or_a_model(
    gateway: Gateway, staff: str, name: str, message: str
) -> None:
    reply = api(gateway, "POST", "aliases", {"name": name, "target": "reasoning"}, key=staff)
    assert (reply.status, error(reply)) == (
        409,
        {"message": message, "type": "conflict_error", "code": "alias_conflict", "param": "name"},
    )
    assert not ModelAlias.objects.exists()


def test_a_category_cannot_take_an_aliass_name(gateway: Gateway, staff: str) -> None:
    create(gateway, staff, "gpt-5", "code")
    reply = api(gateway, "POST", "categories", {"name": "gpt-5"}, key=staff)
    assert (reply.status, error(reply)) == (
        409,
        {
            "message": "'gpt-5' is a model alias: a category cannot shadow it.",
            "type": "conflict_error",
            "code": "alias_conflict",
            "param": "name",
        },
    )
    assert not Category.objects.filter(name="gpt-5").exists()


@pytest.mark.parametrize(
    ("target", "status", "code", "message"),
    [
        ("nope", 404, "category_not_found", "The category 'nope' does not exist."),
        ("demo/nope", 404, "model_not_found", "The model 'demo/nope' does not exist."),
        ("gpt-5", 400, "invalid_target", "'gpt-5' is a model alias: an alias names a category or a model."),
    ],
)
def test_an_unknown_target_is_refused_naming_it(
    gateway: Gateway, staff: str, target: str, status: int, code: str, message: str
) -> None:
    create(gateway, staff, "gpt-5", "code")
    reply = api(gateway, "POST", "aliases", {"name": "claude-sonnet-4-5", "target": target}, key=staff)
    assert (reply.status, error(reply)["code"], error(reply)["message"], error(reply)["param"]) == (
        status,
        code,
        message,
        "target",
    )
    assert list(ModelAlias.objects.values_list("name", flat=True)) == ["gpt-5"]


def test_a_category_an_alias_names_cannot_be_deleted(gateway: Gateway, staff: str) -> None:
    api(gateway, "POST", "categories", {"name": "animals"}, key=staff)
    create(gateway, staff, "gpt-5", "animals")
    create(gateway, staff, "claude-sonnet-4-5", "animals")

    refused = api(gateway, "DELETE", "categories/animals", key=staff)
    assert (refused.status, error(refused)) == (
        409,
        {
            "message": "The category 'animals' is the target of the model alias(es) claude-sonnet-4-5, gpt-5: "
            "delete or retarget them first.",
            "type": "conflict_error",
            "code": "alias_target",
            "param": None,
        },
    )
    assert Category.objects.filter(name="animals").exists()


STAFF_CALLS = [
    ("GET", "aliases", None),
    ("POST", "aliases", {"name": "gpt-5", "target": "code"}),
    ("DELETE", "aliases/gpt-5", None),
]


@pytest.mark.parametrize(("method", "path", "body"), STAFF_CALLS)
def test_a_normal_key_is_forbidden_and_no_key_unauthenticated(
    gateway: Gateway, method: str, path: str, body: Any
) -> None:
    ModelAlias.objects.create(name="gpt-5", category=Category.objects.get(name="reasoning"))
    forbidden = api(gateway, method, path, body, key=apikey_create(name="user")[1])
    assert (forbidden.status, error(forbidden)["type"]) == (403, "permission_error")
    anonymous = api(gateway, method, path, body, key=None)
    assert (anonymous.status, error(anonymous)["type"]) == (401, "authentication_error")
    assert ModelAlias.objects.get().target == "reasoning"


# --- resolution: the official SDK sends the alias -----------------------------------------------------------


def test_an_alias_to_a_category_lands_on_that_categorys_model(gateway: Gateway, staff: str, fake: Fake) -> None:
    create(gateway, staff, "claude-sonnet-4-5", "code")

    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="claude-sonnet-4-5", messages=HELLO, max_tokens=3, extra_headers={"X-Request-ID": "req-alias-1"}
    )
    completion = raw.parse()

    assert raw.headers["X-Spignos-Route"] == "code/demo/demo-smart/1"
    assert completion.model == "demo/demo-smart"
    assert completion.choices[0].message.content == upstream_text(fake, "demo-smart", 3)
    assert fake.stats()["last"]["demo-smart"]["model"] == "demo-smart"  # type: ignore[index]
    wait_until(lambda: UsageRecord.objects.filter(request_id="req-alias-1").exists(), timeout=10)
    row = UsageRecord.objects.get(request_id="req-alias-1")
    assert (row.category, row.model, row.route_mode, row.status) == ("code", "demo/demo-smart", "alias", "ok")


def test_an_alias_to_a_model_lands_on_that_model(gateway: Gateway, staff: str, fake: Fake) -> None:
    create(gateway, staff, "gpt-5", "demo/demo-fast")

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-5", messages=HELLO, max_tokens=4)

    assert raw.headers["X-Spignos-Route"] == "-/demo/demo-fast/1"
    assert raw.parse().model == "demo/demo-fast"
    assert raw.parse().choices[0].message.content == upstream_text(fake, "demo-fast", 4)


def test_an_alias_with_a_dot_streams_from_its_category(gateway: Gateway, staff: str, fake: Fake) -> None:
    create(gateway, staff, "claude-3.5-sonnet", "reasoning")

    with sdk(gateway).chat.completions.with_streaming_response.create(
        model="claude-3.5-sonnet", messages=HELLO, max_tokens=5, stream=True
    ) as response:
        assert response.headers["X-Spignos-Route"] == "reasoning/demo/demo-smart/1"
        chunks = list(response.parse())

    assert {chunk.model for chunk in chunks} == {"demo/demo-smart"}
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == upstream_text(fake, "demo-smart", 5)


def test_generate_follows_an_alias_too_and_its_meta_says_so(gateway: Gateway, staff: str, fake: Fake) -> None:
    create(gateway, staff, "gpt-5", "code")
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate",
        {"prompt": "hello", "model": "gpt-5", "max_tokens": 2},
        key=apikey_create(name="user")[1],
    )
    assert reply.status == 200, reply.text
    meta = reply.json()["meta"]
    assert (meta["category"], meta["model"], meta["route_mode"], meta["attempts"]) == (
        "code",
        "demo/demo-smart",
        "alias",
        [{"model": "demo/demo-smart", "outcome": "ok"}],
    )


def test_retargeting_an_alias_moves_the_next_request(gateway: Gateway, staff: str, fake: Fake) -> None:
    client = sdk(gateway)
    create(gateway, staff, "gpt-5", "demo/demo-fast")
    assert client.chat.completions.create(model="gpt-5", messages=HELLO, max_tokens=2).model == "demo/demo-fast"

    api(gateway, "POST", "aliases", {"name": "gpt-5", "target": "demo/demo-smart"}, key=staff)
    assert client.chat.completions.create(model="gpt-5", messages=HELLO, max_tokens=2).model == "demo/demo-smart"

    api(gateway, "DELETE", "aliases/gpt-5", key=staff)
    with pytest.raises(openai.NotFoundError) as gone:
        client.chat.completions.create(model="gpt-5", messages=HELLO, max_tokens=2)
    assert gone.value.body == {
        "message": "The model 'gpt-5' does not exist.",
        "type": "not_found_error",
        "code": "model_not_found",
        "param": "model",
    }


def test_an_alias_to_a_disabled_model_is_a_404_that_says_so(gateway: Gateway, staff: str, fake: Fake) -> None:
    create(gateway, staff, "gpt-5", "demo/demo-fast")
    LLMModel.objects.filter(provider__name="demo", name="demo-fast").update(enabled=False)
    routing_changed()
    client = sdk(gateway)

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-5", messages=HELLO, max_tokens=2)

    assert caught.value.body == {
        "message": "The model alias 'gpt-5' names 'demo/demo-fast', which is disabled.",
        "type": "not_found_error",
        "code": "model_not_found",
        "param": "model",
    }
    assert fake.stats()["requests"] == {}
    assert "gpt-5" not in [model.id for model in client.models.list()]  # listed only where it leads somewhere


# --- /v1/models ---------------------------------------------------------------------------------------------


def test_the_models_list_holds_the_aliases_and_retrieves_each(gateway: Gateway, staff: str) -> None:
    for name, target in [
        ("gpt-5", "demo/demo-fast"),
        ("claude-sonnet-4-5", "code"),
        ("claude-3.5-sonnet", "reasoning"),
        ("anthropic/claude-sonnet-4.5", "code"),
    ]:
        create(gateway, staff, name, target)
    client = sdk(gateway)

    models = list(client.models.list())

    assert [model.id for model in models] == [
        "router",
        "auto",
        "code",
        "conversation",
        "reasoning",
        "tools",
        "anthropic/claude-sonnet-4.5",
        "claude-3.5-sonnet",
        "claude-sonnet-4-5",
        "gpt-5",
        "demo/demo-embed",
        "demo/demo-fast",
        "demo/demo-smart",
        "local/all-minilm-l6-v2",
    ]
    assert [client.models.retrieve(model.id).model_dump() for model in models] == [m.model_dump() for m in models]
    assert client.models.retrieve("claude-3.5-sonnet").model_dump(exclude_none=True) == {
        "id": "claude-3.5-sonnet",
        "object": "model",
        "created": 0,
        "owned_by": "spignosapi",
    }
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("claude-3.7-sonnet")


# --- embeddings ---------------------------------------------------------------------------------------------


def test_an_alias_to_an_embedding_model_embeds_with_it(gateway: Gateway, staff: str, fake: Fake) -> None:
    # langchain's OpenAIEmbeddings sends text-embedding-ada-002 unless told otherwise.
    create(gateway, staff, "text-embedding-ada-002", "demo/demo-embed")
    create(gateway, staff, "claude-sonnet-4-5", "code")
    client = sdk(gateway)

    aliased = client.embeddings.create(model="text-embedding-ada-002", input="alpha", encoding_format="float")
    direct = client.embeddings.create(model="demo/demo-embed", input="alpha", encoding_format="float")

    assert aliased.model == "demo/demo-embed"
    assert aliased.data[0].embedding == direct.data[0].embedding
    assert fake.stats()["requests"] == {"demo-embed": 2}
    with pytest.raises(openai.BadRequestError) as category:
        client.embeddings.create(model="claude-sonnet-4-5", input="alpha")
    assert category.value.body == {
        "message": "The model alias 'claude-sonnet-4-5' names the category 'code', not an embedding model.",
        "type": "invalid_request_error",
        "code": "not_an_embedding_model",
        "param": "model",
    }
