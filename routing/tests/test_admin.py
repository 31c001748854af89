"""The routing admin: categories with their ordered chain, providers, models, breakers."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from routing.breaker import Breakers, default_breakers
from routing.models import Category, ChainEntry, CircuitBreaker, LLMModel, ModelAlias, Provider
from routing.seed import seed_defaults
from routing.selectors import routing_config
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded_db(db: None) -> None:
    seed_defaults()


def chain(category: str) -> list[str]:
    entries = ChainEntry.objects.filter(category__name=category).select_related("model__provider")
    return [e.model.model_id for e in entries.order_by("position")]


def inline_models(response: Any) -> list[str]:
    [inline] = response.context["inline_admin_formsets"]
    return [str(form.instance.model) for form in inline.formset.initial_forms]


def test_the_category_page_shows_its_chain_in_position_order(admin_client: Client, seeded_db: None) -> None:
    code = Category.objects.get(name="code")
    # Positions opposite to creation order, so id order would show the wrong chain.
    for entry in ChainEntry.objects.filter(category=code):
        entry.position = 10 - entry.position
        entry.save()
    response = admin_client.get(f"/admin/routing/category/{code.pk}/change/")
    assert response.status_code == 200
    assert inline_models(response) == ["demo/demo-fast", "demo/demo-smart"]
    assert inline_models(response) == chain("code")


def test_saving_the_category_page_reorders_the_chain_and_reloads_routing(
    admin_client: Client, seeded_db: None, django_capture_on_commit_callbacks: Any
) -> None:
    code = Category.objects.get(name="code")
    page = admin_client.get(f"/admin/routing/category/{code.pk}/change/")
    data = admin_form_data(page)
    assert [data["chain-0-position"], data["chain-1-position"]] == [0, 1]
    data["chain-0-position"], data["chain-1-position"] = 1, 0
    assert routing_config.get().categories["code"].chain == ("demo/demo-smart", "demo/demo-fast")
    version = cache.get("snapshot:routing:version")

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/routing/category/{code.pk}/change/", data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert chain("code") == ["demo/demo-fast", "demo/demo-smart"]
    assert routing_config.get().categories["code"].chain == ("demo/demo-fast", "demo/demo-smart")
    assert cache.get("snapshot:routing:version") != version  # every other process reloads too


def test_a_model_can_be_added_to_a_chain_from_the_category_page(admin_client: Client, seeded_db: None) -> None:
    animals = Category.objects.create(name="animals", keywords=["zebra"])
    smart = LLMModel.objects.get(name="demo-smart")
    data = admin_form_data(admin_client.get(f"/admin/routing/category/{animals.pk}/change/"))
    data.update({"chain-0-position": 0, "chain-0-model": smart.pk})
    response = admin_client.post(f"/admin/routing/category/{animals.pk}/change/", data)
    assert response.status_code == 302
    assert chain("animals") == ["demo/demo-smart"]
    assert routing_config.get().categories["animals"].chain == ("demo/demo-smart",)


def test_a_built_in_category_keeps_its_name_and_cannot_be_deleted(admin_client: Client, seeded_db: None) -> None:
    tools = Category.objects.get(name="tools")
    data = admin_form_data(admin_client.get(f"/admin/routing/category/{tools.pk}/change/"))
    assert "name" not in data  # read-only on the page
    data.update({"name": "gadgets", "description": "Edited."})
    assert admin_client.post(f"/admin/routing/category/{tools.pk}/change/", data).status_code == 302
    tools.refresh_from_db()
    assert (tools.name, tools.description) == ("tools", "Edited.")
    assert admin_client.get(f"/admin/routing/category/{tools.pk}/delete/").status_code == 403
    custom = Category.objects.create(name="custom")
    assert admin_client.post(f"/admin/routing/category/{custom.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Category.objects.filter(name="custom").exists()


def test_the_category_list_shows_each_chain(admin_client: Client, seeded_db: None) -> None:
    response = admin_client.get("/admin/routing/category/")
    assert response.status_code == 200
    assert "demo/demo-fast → demo/demo-smart" in response.content.decode()


def test_the_provider_and_model_pages_load(admin_client: Client, seeded_db: None) -> None:
    demo = Provider.objects.get(name="demo")
    fast = LLMModel.objects.get(name="demo-fast")
    for url in (
        "/admin/routing/provider/",
        f"/admin/routing/provider/{demo.pk}/change/",
        "/admin/routing/provider/add/",
        "/admin/routing/llmmodel/",
        f"/admin/routing/llmmodel/{fast.pk}/change/",
        f"/admin/routing/llmmodel/?provider__id__exact={demo.pk}",
    ):
        assert admin_client.get(url).status_code == 200, url
    models_page = admin_client.get("/admin/routing/llmmodel/")
    assert [str(m) for m in models_page.context["cl"].result_list] == [
        "demo/demo-embed",
        "demo/demo-fast",
        "demo/demo-smart",
        "local/all-minilm-l6-v2",
    ]


def test_the_chain_inline_searches_models(admin_client: Client, seeded_db: None) -> None:
    response = admin_client.get(
        "/admin/autocomplete/",
        {"app_label": "routing", "model_name": "chainentry", "field_name": "model", "term": "smart"},
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["demo/demo-smart"]


def test_the_reset_action_closes_an_open_breaker(admin_client: Client, seeded_db: None) -> None:
    smart = LLMModel.objects.get(name="demo-smart")
    breakers = Breakers(threshold=3, open_seconds=300)
    for _ in range(3):
        breakers.record_failure(smart.pk, "timeout: too slow")
    row = CircuitBreaker.objects.get(model=smart)
    assert row.state == "open"
    assert default_breakers().states([smart.pk])[smart.pk].state == "open"  # now cached as open

    response = admin_client.post(
        "/admin/routing/circuitbreaker/", {"action": "reset_breakers", "_selected_action": [row.pk]}, follow=True
    )

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["1 breaker(s) reset."]
    row.refresh_from_db()
    assert (row.state, row.consecutive_failures, row.opened_at, row.last_error) == ("closed", 0, None, "")
    assert default_breakers().states([smart.pk])[smart.pk].state == "closed"  # the cache forgot it
    assert admin_client.get("/admin/routing/circuitbreaker/add/").status_code == 403


# --- model aliases ------------------------------------------------------------------------------------------


def test_an_alias_is_added_from_the_admin_and_routing_reloads(
    admin_client: Client, seeded_db: None, django_capture_on_commit_callbacks: Any
) -> None:
    code = Category.objects.get(name="code")
    assert admin_client.get("/admin/routing/modelalias/add/").status_code == 200
    version = cache.get("snapshot:routing:version")
    routing_config.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/routing/modelalias/add/", {"name": "claude-3.5-sonnet", "category": code.pk}
        )

    assert response.status_code == 302, response.context and response.context["errors"]
    alias = ModelAlias.objects.get()
    assert (alias.name, alias.category, alias.model) == ("claude-3.5-sonnet", code, None)
    assert routing_config.get().aliases["claude-3.5-sonnet"].category == "code"
    assert cache.get("snapshot:routing:version") != version


def test_the_alias_page_retargets_an_alias_to_a_model(admin_client: Client, seeded_db: None) -> None:
    alias = ModelAlias.objects.create(name="gpt-5", category=Category.objects.get(name="code"))
    fast = LLMModel.objects.get(name="demo-fast")
    data = admin_form_data(admin_client.get(f"/admin/routing/modelalias/{alias.pk}/change/"))
    data.pop("category")
    data["model"] = fast.pk
    assert admin_client.post(f"/admin/routing/modelalias/{alias.pk}/change/", data).status_code == 302
    alias.refresh_from_db()
    assert (alias.category, alias.model) == (None, fast)
    assert routing_config.get().aliases["gpt-5"].model == "demo/demo-fast"


@pytest.mark.parametrize(
    ("form", "errors"),
    [
        ({"name": "gpt-5"}, {"__all__": ["An alias names either a category or a model (exactly one)."]}),
        (
            {"name": "gpt-5", "category": "code", "model": "demo-fast"},
            {"__all__": ["An alias names either a category or a model (exactly one)."]},
        ),
        (
            {"name": "conversation", "category": "code"},
            {"name": ["'conversation' is a category: an alias cannot shadow it."]},
        ),
        (
            {"name": "demo/demo-smart", "category": "code"},
            {"name": ["'demo/demo-smart' is a model: an alias cannot shadow it."]},
        ),
        ({"name": "auto", "category": "code"}, {"name": ["'auto' is reserved: it asks for the router."]}),
        (
            {"name": "gpt 5", "category": "code"},
            {
                "name": [
                    "Letters, digits and - _ . : @, starting with a letter or digit; single slashes may separate parts."
                ]
            },
        ),
    ],
)
def test_the_admin_refuses_an_alias_without_exactly_one_target_or_shadowing(
    admin_client: Client, seeded_db: None, form: dict[str, str], errors: dict[str, list[str]]
) -> None:
    data: dict[str, Any] = {"name": form["name"]}
    if "category" in form:
        data["category"] = Category.objects.get(name=form["category"]).pk
    if "model" in form:
        data["model"] = LLMModel.objects.get(name=form["model"]).pk
    response = admin_client.post("/admin/routing/modelalias/add/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == errors
    assert not ModelAlias.objects.exists()


def test_the_admin_refuses_a_category_taking_an_aliass_name(admin_client: Client, seeded_db: None) -> None:
    ModelAlias.objects.create(name="gpt-5", category=Category.objects.get(name="code"))
    response = admin_client.post(
        "/admin/routing/category/add/",
        {"name": "gpt-5", "strategy": "ordered", "chain-TOTAL_FORMS": 0, "chain-INITIAL_FORMS": 0},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "name": ["'gpt-5' is a model alias: a category cannot shadow it."]
    }


def test_the_alias_list_searches_by_name_and_target(admin_client: Client, seeded_db: None) -> None:
    ModelAlias.objects.create(name="claude-sonnet-4-5", category=Category.objects.get(name="code"))
    ModelAlias.objects.create(name="gpt-5", model=LLMModel.objects.get(name="demo-fast"))

    def found(term: str) -> list[str]:
        response = admin_client.get("/admin/routing/modelalias/", {"q": term})
        assert response.status_code == 200
        return [str(alias) for alias in response.context["cl"].result_list]

    assert found("") == ["claude-sonnet-4-5 → code", "gpt-5 → demo/demo-fast"]
    assert found("claude") == ["claude-sonnet-4-5 → code"]
    assert found("demo-fast") == ["gpt-5 → demo/demo-fast"]
    assert found("code") == ["claude-sonnet-4-5 → code"]


def test_a_category_or_model_an_alias_names_is_protected_in_the_admin(admin_client: Client, seeded_db: None) -> None:
    animals = Category.objects.create(name="animals")
    fast = LLMModel.objects.get(name="demo-fast")
    ModelAlias.objects.create(name="zoo", category=animals)
    ModelAlias.objects.create(name="gpt-5", model=fast)

    for url in (f"/admin/routing/category/{animals.pk}/delete/", f"/admin/routing/llmmodel/{fast.pk}/delete/"):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert page.context["protected"], url  # Django lists the aliases that prevent it
        admin_client.post(url, {"post": "yes"})
    assert Category.objects.filter(pk=animals.pk).exists()
    assert LLMModel.objects.filter(pk=fast.pk).exists()


def test_drop_params_is_set_from_the_provider_page_and_reaches_the_llm_config(
    admin_client: Client, seeded_db: None, django_capture_on_commit_callbacks: Any
) -> None:
    demo = Provider.objects.get(name="demo")
    page = admin_client.get(f"/admin/routing/provider/{demo.pk}/change/")
    data = admin_form_data(page)
    assert "drop_params" not in data  # an unticked box, as a browser sends it
    assert routing_config.get().providers["demo"].drop_params is False
    data["drop_params"] = "on"

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/routing/provider/{demo.pk}/change/", data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert Provider.objects.get(name="demo").drop_params is True
    assert routing_config.get().providers["demo"].drop_params is True


def test_a_categorys_strategy_and_a_providers_grid_and_pue_are_set_from_the_admin(
    admin_client: Client, seeded_db: None, django_capture_on_commit_callbacks: Any
) -> None:
    code = Category.objects.get(name="code")
    data = admin_form_data(admin_client.get(f"/admin/routing/category/{code.pk}/change/"))
    assert data["strategy"] == "ordered"
    data["strategy"] = "carbon"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/routing/category/{code.pk}/change/", data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert routing_config.get().categories["code"].strategy == "carbon"

    demo = Provider.objects.get(name="demo")
    data = admin_form_data(admin_client.get(f"/admin/routing/provider/{demo.pk}/change/"))
    assert "grid_gco2e_per_kwh" not in data and "pue" not in data  # empty: the defaults
    data.update({"grid_gco2e_per_kwh": "56", "pue": "1.2"})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/routing/provider/{demo.pk}/change/", data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert routing_config.get().carbon["demo"] == (56.0, 1.2)
    assert routing_config.get().models["demo/demo-fast"].pue == 1.2

    data["pue"] = "0.9"  # below 1 is no PUE
    response = admin_client.post(f"/admin/routing/provider/{demo.pk}/change/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"pue": ["Ensure this value is greater than or equal to 1.0."]}
    assert Provider.objects.get(name="demo").pue == 1.2


def test_the_latency_figures_page_is_read_only(admin_client: Client, seeded_db: None) -> None:
    from datetime import UTC, datetime

    from routing.selectors import LatencyFigure
    from routing.services import publish_latency_figures

    publish_latency_figures({"demo/demo-fast": LatencyFigure(412.0, 38, datetime(2026, 12, 5, tzinfo=UTC))})
    listing = admin_client.get("/admin/routing/modellatency/")
    assert listing.status_code == 200
    assert "demo/demo-fast" in listing.content.decode()
    assert admin_client.get("/admin/routing/modellatency/add/").status_code == 403
