"""``manage.py sync_providers FILE.yaml [--prune]`` (contract sections 1 and 5)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from routing.models import Category, ChainEntry, LLMModel, ModelAlias, Provider
from routing.seed import seed_defaults
from routing.selectors import routing_config
from routing.strategy import rank

pytestmark = pytest.mark.django_db

CONTRACT_EXAMPLE = """
providers:
  - name: openai
    kind: openai            # openai | azure | anthropic | ollama | openrouter | llmaas | openai_compatible
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY     # optional (local servers need none); the secret stays in the environment
    timeout_s: 300
    models:
      - name: gpt-4o-mini
        price_in_per_m: 0.15       # USD per million input tokens
        price_out_per_m: 0.60
        energy_kwh_per_m: 0.3      # kWh per million tokens (central value)
        monitor: true
categories:
  - name: code
    keywords: [python, function, bug]
    models: [openai/gpt-4o-mini]
"""

LOCAL = """
providers:
  - name: local
    kind: ollama
    base_url: http://ollama:11434/v1
    models:
      - name: llama3.2
      - name: qwen2.5
        price_in_per_m: 0
        price_out_per_m: 0
        energy_kwh_per_m: 0.02
        monitor: false
categories:
  - name: local-chat
    description: Chat on the local box.
    keywords: [Bonjour, " salut ", bonjour]
    models: [local/qwen2.5, local/llama3.2]
"""


BOTH = (
    CONTRACT_EXAMPLE.split("categories:")[0]
    + LOCAL.split("categories:")[0].replace("providers:\n", "")
    + "categories:"
    + CONTRACT_EXAMPLE.split("categories:")[1]
    + LOCAL.split("categories:")[1]
)


def sync(tmp_path: Path, text: str, *args: str) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    out = io.StringIO()
    call_command("sync_providers", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def snapshot_of_tables() -> list[Any]:
    return [
        list(Provider.objects.order_by("name").values()),
        list(LLMModel.objects.order_by("provider__name", "name").values()),
        list(Category.objects.order_by("name").values()),
        list(ChainEntry.objects.order_by("category__name", "position").values_list("category__name", "model_id")),
        list(ModelAlias.objects.order_by("name").values()),
    ]


def chain(category: str) -> list[str]:
    entries = ChainEntry.objects.filter(category__name=category).select_related("model__provider")
    return [e.model.model_id for e in entries.order_by("position")]


def test_it_creates_what_the_contract_example_describes(tmp_path: Path) -> None:
    out = sync(tmp_path, CONTRACT_EXAMPLE)

    provider = Provider.objects.get()
    assert (provider.name, provider.kind, provider.base_url, provider.api_key_env, provider.timeout_s) == (
        "openai",
        "openai",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        300.0,
    )
    assert (provider.enabled, provider.is_demo) == (True, False)
    model = LLMModel.objects.get()
    assert (model.provider_id, model.name, model.monitor, model.enabled) == (provider.pk, "gpt-4o-mini", True, True)
    assert (model.price_in_per_m, model.price_out_per_m, model.energy_kwh_per_m) == (
        Decimal("0.15"),
        Decimal("0.60"),
        0.3,
    )
    category = Category.objects.get()
    assert (category.name, category.keywords, category.builtin) == ("code", ["bug", "function", "python"], False)
    assert chain("code") == ["openai/gpt-4o-mini"]
    assert out.splitlines() == [
        "providers: 1 created, 0 updated, 0 unchanged, 0 deleted",
        "models: 1 created, 0 updated, 0 unchanged, 0 deleted",
        "categories: 1 created, 0 updated, 0 unchanged, 0 deleted",
    ]


def test_it_fills_defaults_for_what_an_entry_leaves_out(tmp_path: Path) -> None:
    sync(tmp_path, LOCAL)
    provider = Provider.objects.get(name="local")
    # A single-label host (a compose service) is a valid base URL.
    assert (provider.kind, provider.base_url, provider.api_key_env, provider.timeout_s) == (
        "ollama",
        "http://ollama:11434/v1",
        "",
        300.0,
    )
    llama = LLMModel.objects.get(name="llama3.2")
    assert (llama.price_in_per_m, llama.price_out_per_m, llama.energy_kwh_per_m, llama.monitor) == (
        Decimal("0"),
        Decimal("0"),
        None,
        True,
    )
    qwen = LLMModel.objects.get(name="qwen2.5")
    assert (qwen.energy_kwh_per_m, qwen.monitor) == (0.02, False)
    category = Category.objects.get(name="local-chat")
    assert (category.description, category.keywords) == ("Chat on the local box.", ["bonjour", "salut"])
    assert chain("local-chat") == ["local/qwen2.5", "local/llama3.2"]


def test_running_it_twice_changes_nothing(tmp_path: Path) -> None:
    sync(tmp_path, BOTH)
    before = snapshot_of_tables()
    version = cache.get("snapshot:routing:version")

    out = sync(tmp_path, BOTH)

    assert snapshot_of_tables() == before  # updated_at included: no row was even saved
    assert cache.get("snapshot:routing:version") == version
    assert out.splitlines() == [
        "providers: 0 created, 0 updated, 2 unchanged, 0 deleted",
        "models: 0 created, 0 updated, 3 unchanged, 0 deleted",
        "categories: 0 created, 0 updated, 2 unchanged, 0 deleted",
    ]


def test_it_updates_what_changed_and_keeps_keys_the_file_leaves_out(tmp_path: Path) -> None:
    sync(tmp_path, CONTRACT_EXAMPLE)
    LLMModel.objects.update(rpm_budget=100)  # set in the admin, not in the file
    changed = CONTRACT_EXAMPLE.replace("price_out_per_m: 0.60", "price_out_per_m: 0.75").replace(
        "[python, function, bug]", "[python, rust]"
    )

    out = sync(tmp_path, changed.replace("    timeout_s: 300\n", ""))

    model = LLMModel.objects.get()
    assert (model.price_in_per_m, model.price_out_per_m, model.rpm_budget) == (Decimal("0.15"), Decimal("0.75"), 100)
    assert Provider.objects.get().timeout_s == 300.0
    assert Category.objects.get().keywords == ["python", "rust"]
    assert out.splitlines() == [
        "providers: 0 created, 0 updated, 1 unchanged, 0 deleted",
        "models: 0 created, 1 updated, 0 unchanged, 0 deleted",
        "categories: 0 created, 1 updated, 0 unchanged, 0 deleted",
    ]


def test_it_reorders_a_chain_and_edits_a_built_in_category(tmp_path: Path) -> None:
    seed_defaults()
    sync(tmp_path, "categories:\n  - name: conversation\n    models: [demo/demo-smart, demo/demo-fast]\n")
    assert chain("conversation") == ["demo/demo-smart", "demo/demo-fast"]
    conversation = Category.objects.get(name="conversation")
    assert conversation.builtin is True
    assert conversation.keywords == ["hello", "hi", "thanks", "chat", "joke", "story"]  # left as it was


def test_it_never_deletes_what_the_file_does_not_mention(tmp_path: Path) -> None:
    seed_defaults()
    Category.objects.create(name="custom", keywords=["x"])
    before = snapshot_of_tables()
    sync(tmp_path, CONTRACT_EXAMPLE)
    assert set(Provider.objects.values_list("name", flat=True)) == {"demo", "local", "openai"}
    assert LLMModel.objects.filter(provider__name="demo").count() == 3
    assert set(Category.objects.values_list("name", flat=True)) == {
        "code",
        "conversation",
        "custom",
        "reasoning",
        "tools",
    }
    assert chain("conversation") == ["demo/demo-fast", "demo/demo-smart"]
    assert chain("code") == ["openai/gpt-4o-mini"]  # the file gave code's chain
    assert snapshot_of_tables()[0][0] == before[0][0]  # the demo provider row is untouched


def test_prune_deletes_what_the_file_does_not_mention_except_built_in_categories(tmp_path: Path) -> None:
    seed_defaults()
    Category.objects.create(name="custom", keywords=["x"])
    sync(tmp_path, LOCAL)

    out = sync(tmp_path, CONTRACT_EXAMPLE, "--prune")

    assert list(Provider.objects.values_list("name", flat=True)) == ["openai"]
    assert [m.model_id for m in LLMModel.objects.select_related("provider")] == ["openai/gpt-4o-mini"]
    assert list(Category.objects.values_list("name", "builtin")) == [
        ("code", True),
        ("conversation", True),
        ("reasoning", True),
        ("tools", True),
    ]
    assert chain("code") == ["openai/gpt-4o-mini"]
    assert chain("conversation") == []  # its demo models went with the demo provider
    assert out.splitlines() == [
        "providers: 1 created, 0 updated, 0 unchanged, 2 deleted",
        "models: 1 created, 0 updated, 0 unchanged, 6 deleted",
        "categories: 0 created, 1 updated, 0 unchanged, 2 deleted",
        # demo-fast, demo-smart, demo-embed; the seeded all-minilm-l6-v2 beside the file's two local models
        "deleted provider demo (and its 3 models)",
        "deleted provider local (and its 3 models)",
        "deleted category custom",
        "deleted category local-chat",
    ]


def test_it_warns_about_a_category_left_without_models(tmp_path: Path) -> None:
    seed_defaults()
    path = tmp_path / "providers.yaml"
    path.write_text(CONTRACT_EXAMPLE)
    err = io.StringIO()
    call_command("sync_providers", str(path), "--prune", stdout=io.StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [
        "warning: category conversation has no model in its chain",
        "warning: category reasoning has no model in its chain",
        "warning: category tools has no model in its chain",
    ]


def test_prune_deletes_models_a_listed_provider_no_longer_lists(tmp_path: Path) -> None:
    sync(tmp_path, LOCAL)
    out = sync(tmp_path, LOCAL.replace("      - name: llama3.2\n", "").replace(", local/llama3.2", ""), "--prune")
    assert [m.model_id for m in LLMModel.objects.select_related("provider")] == ["local/qwen2.5"]
    assert chain("local-chat") == ["local/qwen2.5"]
    assert "deleted model local/llama3.2" in out.splitlines()


def test_it_makes_every_process_reload_its_routing(tmp_path: Path, django_capture_on_commit_callbacks: Any) -> None:
    routing_config.get()
    version = cache.get("snapshot:routing:version")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        sync(tmp_path, CONTRACT_EXAMPLE)
    assert len(callbacks) >= 1
    assert cache.get("snapshot:routing:version") not in (None, version)
    assert routing_config.get().categories["code"].chain == ("openai/gpt-4o-mini",)


def test_a_dry_run_reports_and_writes_nothing(tmp_path: Path) -> None:
    out = sync(tmp_path, CONTRACT_EXAMPLE, "--dry-run")
    assert Provider.objects.count() == 0
    assert out.splitlines()[0] == "(dry run, nothing written) providers: 1 created, 0 updated, 0 unchanged, 0 deleted"


# --- bad files: a clear error, nothing written ------------------------------------------------------------


def assert_refused(tmp_path: Path, text: str, *expected: str, args: tuple[str, ...] = ()) -> None:
    seed_defaults()
    before = snapshot_of_tables()
    with pytest.raises(CommandError) as refused:
        sync(tmp_path, text, *args)
    message = str(refused.value)
    assert "nothing was written" in message or "YAML" in message or "cannot read" in message
    for part in expected:
        assert part in message
    assert snapshot_of_tables() == before


def test_it_refuses_an_unknown_kind(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE.replace("kind: openai ", "kind: openia "),
        "providers[0] (openai).kind: unknown kind 'openia' (one of anthropic, azure, llmaas, local, ollama, openai, "
        "openai_compatible, openrouter)",
    )


@pytest.mark.parametrize("url", ["ftp://api.openai.com/v1", "api.openai.com/v1", "file:///etc/passwd", "http://"])
def test_it_refuses_a_base_url_that_is_not_http(tmp_path: Path, url: str) -> None:
    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE.replace("https://api.openai.com/v1", url),
        f"providers[0] (openai).base_url: {url!r} is not an http(s) URL",
    )


def test_it_refuses_a_category_naming_an_unknown_model(tmp_path: Path) -> None:
    # The provider before it is valid: it is not written either.
    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE.replace("models: [openai/gpt-4o-mini]", "models: [openai/gpt-4o-mini, openai/gpt-5]"),
        "categories[0] (code).models: 'openai/gpt-5' is not in the file nor in the database",
    )


def test_it_refuses_a_chain_naming_a_model_that_prune_would_delete(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE.replace("models: [openai/gpt-4o-mini]", "models: [demo/demo-fast]"),
        "categories[0] (code).models: 'demo/demo-fast' would be pruned",
        args=("--prune",),
    )


def test_it_lists_every_problem_at_once(tmp_path: Path) -> None:
    text = """
providers:
  - name: a
    kind: openai
    base_url: https://a.example/v1
    api_key: sk-secret
    timeout_s: -1
    models:
      - name: m
        price_in_per_m: cheap
        monitor: maybe
      - name: m
  - name: a
    base_url: https://b.example/v1
categories:
  - name: c
    models: [a/m, a/m]
"""
    assert_refused(
        tmp_path,
        text,
        "8 problem(s)",
        "providers[0] (a): unknown key 'api_key' (keys stay in the environment: name the variable with api_key_env)",
        "providers[0] (a).timeout_s: expected a number >= 0.1, got -1",
        "providers[0] (a).models[0].price_in_per_m: expected a number >= 0, got 'cheap'",
        "providers[0] (a).models[0].monitor: expected true or false, got 'maybe'",
        "providers[0] (a).models[1]: model 'm' appears twice",
        "providers[1] (a): kind is required",
        "providers[1] (a): provider 'a' appears twice",
        "categories[0] (c).models: a model may appear only once in a chain",
    )


def test_a_problem_found_while_writing_rolls_everything_back(tmp_path: Path) -> None:
    # Only the database's own validation knows the name is too long: the first provider was already saved.
    text = CONTRACT_EXAMPLE.replace(
        "categories:", f"  - name: {'x' * 60}\n    kind: openai\n    base_url: http://x\ncategories:"
    )
    assert_refused(tmp_path, text, "providers[1] (xxxx", "name: Ensure this value has at most 50 characters")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("providers: [\n", "not valid YAML"),
        ("", "the document must be a mapping with providers, categories and/or aliases"),
        ("- name: openai\n", "the document must be a mapping with providers, categories and/or aliases"),
        ("providers: {name: x}\n", "providers: expected a list"),
        ("providers: []\nmodels: []\n", "(top level): unknown key 'models'"),
    ],
)
def test_it_refuses_a_malformed_document(tmp_path: Path, text: str, expected: str) -> None:
    assert_refused(tmp_path, text, expected)


def test_it_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read it"):
        call_command("sync_providers", str(tmp_path / "nope.yaml"))


def test_it_refuses_names_of_the_wrong_type(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        "providers:\n  - {name: [a], kind: openai, base_url: 'http://a'}\ncategories:\n  - {name: {x: 1}}\n",
        "providers[0].name: expected a string, got ['a']",
        "categories[0].name: expected a string, got {'x': 1}",
    )


# --- aliases: --------------------------------------------------------------------------------------------------

WITH_ALIASES = (
    CONTRACT_EXAMPLE
    + """
aliases:
  claude-sonnet-4-5: code           # a client-facing model name → a category or a model id
  gpt-5: openai/gpt-4o-mini
  "claude-3.5-sonnet": conversation
"""
)


def aliases() -> dict[str, str]:
    return {a.name: a.target for a in ModelAlias.objects.select_related("category", "model__provider")}


def test_it_creates_the_aliases_of_the_file(tmp_path: Path) -> None:
    seed_defaults()

    out = sync(tmp_path, WITH_ALIASES)

    assert aliases() == {
        "claude-3.5-sonnet": "conversation",
        "claude-sonnet-4-5": "code",
        "gpt-5": "openai/gpt-4o-mini",
    }
    gpt5 = ModelAlias.objects.get(name="gpt-5")
    assert (gpt5.category, gpt5.model) == (None, LLMModel.objects.get(name="gpt-4o-mini"))
    assert out.splitlines() == [
        "providers: 1 created, 0 updated, 0 unchanged, 0 deleted",
        "models: 1 created, 0 updated, 0 unchanged, 0 deleted",
        "categories: 0 created, 1 updated, 0 unchanged, 0 deleted",
        "aliases: 3 created, 0 updated, 0 unchanged, 0 deleted",
    ]
    assert routing_config.get().aliases["gpt-5"].model == "openai/gpt-4o-mini"


def test_aliases_sync_idempotently_and_follow_a_new_target(tmp_path: Path) -> None:
    seed_defaults()
    sync(tmp_path, WITH_ALIASES)
    before = snapshot_of_tables()

    again = sync(tmp_path, WITH_ALIASES)

    assert snapshot_of_tables() == before
    assert again.splitlines()[-1] == "aliases: 0 created, 0 updated, 3 unchanged, 0 deleted"
    moved = sync(tmp_path, WITH_ALIASES.replace("gpt-5: openai/gpt-4o-mini", "gpt-5: reasoning"))
    assert moved.splitlines()[-1] == "aliases: 0 created, 1 updated, 2 unchanged, 0 deleted"
    gpt5 = ModelAlias.objects.get(name="gpt-5")
    assert (gpt5.category, gpt5.model) == (Category.objects.get(name="reasoning"), None)


def test_an_alias_may_name_what_the_database_holds(tmp_path: Path) -> None:
    seed_defaults()
    sync(tmp_path, "aliases:\n  gpt-5: demo/demo-fast\n  llama3.1:8b: code\n")
    assert aliases() == {"gpt-5": "demo/demo-fast", "llama3.1:8b": "code"}


def test_without_prune_aliases_the_file_does_not_mention_stay(tmp_path: Path) -> None:
    seed_defaults()
    ModelAlias.objects.create(name="kept", category=Category.objects.get(name="code"))
    sync(tmp_path, WITH_ALIASES)
    assert set(aliases()) == {"kept", "claude-sonnet-4-5", "gpt-5", "claude-3.5-sonnet"}


def test_prune_deletes_aliases_the_file_does_not_mention_before_their_targets(tmp_path: Path) -> None:
    seed_defaults()
    sync(tmp_path, LOCAL + "aliases:\n  qwen: local/qwen2.5\n  chat: local-chat\n")

    out = sync(tmp_path, WITH_ALIASES.replace('  "claude-3.5-sonnet": conversation\n', ""), "--prune")

    assert aliases() == {"claude-sonnet-4-5": "code", "gpt-5": "openai/gpt-4o-mini"}
    assert not Provider.objects.filter(name="local").exists()  # no alias held its models any more
    assert "aliases: 2 created, 0 updated, 0 unchanged, 2 deleted" in out.splitlines()
    assert {"deleted alias chat", "deleted alias qwen"} <= set(out.splitlines())


def test_it_refuses_an_alias_naming_an_unknown_target(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        WITH_ALIASES.replace("gpt-5: openai/gpt-4o-mini", "gpt-5: openai/gpt-5").replace(
            "claude-sonnet-4-5: code", "claude-sonnet-4-5: coding"
        ),
        "2 problem(s)",
        "aliases.claude-sonnet-4-5: 'coding' is not a category in the file nor in the database",
        "aliases.gpt-5: 'openai/gpt-5' is not a model in the file nor in the database",
    )


def test_it_refuses_an_alias_naming_what_prune_would_delete(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE + "aliases:\n  gpt-5: demo/demo-fast\n",
        "aliases.gpt-5: 'demo/demo-fast' would be pruned",
        args=("--prune",),
    )


def test_it_refuses_an_alias_shadowing_a_category_or_a_model(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE + "aliases:\n  code: reasoning\n  openai/gpt-4o-mini: code\n",
        "aliases.code: 'code' is a category: an alias cannot shadow it",
        "aliases.openai/gpt-4o-mini: 'openai/gpt-4o-mini' is a model: an alias cannot shadow it",
    )


def test_it_refuses_a_category_taking_an_aliass_name(tmp_path: Path) -> None:
    seed_defaults()
    ModelAlias.objects.create(name="gpt-5", category=Category.objects.get(name="code"))
    assert_refused(
        tmp_path,
        "categories:\n  - name: gpt-5\n",
        "categories[0] (gpt-5): name: 'gpt-5' is a model alias: a category cannot shadow it.",
    )


def test_it_refuses_malformed_aliases(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        "aliases:\n  1.5: code\n  router: code\n  bad name: code\n  gpt-5: [code]\n  o3:\n",
        "5 problem(s)",
        "aliases: the name 1.5 must be a string (quote it)",
        "aliases.router: 'router' is reserved: it asks for the router",
        "aliases.bad name: Letters, digits and - _ . : @, starting with a letter or digit; single slashes may "
        "separate parts.",
        "aliases.gpt-5: expected a category or a model id, got ['code']",
        "aliases.o3: expected a category or a model id, got None",
    )
    assert_refused(tmp_path, "aliases: [gpt-5]\n", "aliases: expected a mapping of names to a category or a model id")


def test_drop_params_is_synced_and_reaches_the_llm_config(tmp_path: Path) -> None:
    sync(tmp_path, CONTRACT_EXAMPLE.replace("    timeout_s: 300\n", "    timeout_s: 300\n    drop_params: true\n"))
    assert Provider.objects.get().drop_params is True
    routing_config.invalidate()
    assert routing_config.get().providers["openai"].drop_params is True

    sync(tmp_path, CONTRACT_EXAMPLE)  # absent: left as it is
    assert Provider.objects.get().drop_params is True
    sync(tmp_path, CONTRACT_EXAMPLE.replace("    timeout_s: 300\n", "    timeout_s: 300\n    drop_params: false\n"))
    assert Provider.objects.get().drop_params is False


def test_it_refuses_a_drop_params_that_is_not_a_boolean(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE.replace("    timeout_s: 300\n", "    timeout_s: 300\n    drop_params: sometimes\n"),
        "providers[0] (openai).drop_params: expected true or false, got 'sometimes'",
    )


def test_it_marks_what_a_model_supports_for_the_monitors_probes(tmp_path: Path) -> None:
    marked = CONTRACT_EXAMPLE.replace(
        "        monitor: true\n",
        "        monitor: true\n        supports_tools: true\n        supports_structured_output: true\n",
    )
    sync(tmp_path, LOCAL)
    sync(tmp_path, marked)

    flags = {m.name: (m.supports_tools, m.supports_structured_output) for m in LLMModel.objects.all()}

    assert flags == {"gpt-4o-mini": (True, True), "llama3.2": (False, False), "qwen2.5": (False, False)}
    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE.replace("        monitor: true\n", "        monitor: true\n        supports_tools: 'yes'\n"),
        "providers[0] (openai).models[0].supports_tools: expected true or false, got 'yes'",
    )


# --- where a provider runs, and a category's strategy ------------------------------------------------------

CARBON = """
providers:
  - name: hydro
    kind: openai_compatible
    base_url: http://hydro.example:8000/v1
    grid_gco2e_per_kwh: 20
    pue: 1.1
    models:
      - name: big
        energy_kwh_per_m: 1.0
  - name: coal
    kind: openai_compatible
    base_url: http://coal.example:8000/v1
    grid_gco2e_per_kwh: 900
    models:
      - name: small
        energy_kwh_per_m: 0.05
  - name: plain
    kind: openai_compatible
    base_url: http://plain.example:8000/v1
    pue: 1.3
    models:
      - name: mid
        energy_kwh_per_m: 0.1
categories:
  - name: green
    keywords: [tree]
    models: [coal/small, plain/mid, hydro/big]
    strategy: carbon
"""


def test_it_reads_where_each_provider_runs_and_the_categorys_strategy(tmp_path: Path, settings: Any) -> None:
    settings.ENERGY_GRID_G_CO2E_PER_KWH = 400.0
    sync(tmp_path, CARBON)
    hydro, coal, plain = (Provider.objects.get(name=name) for name in ("hydro", "coal", "plain"))
    assert (hydro.grid_gco2e_per_kwh, hydro.pue) == (20.0, 1.1)
    assert (coal.grid_gco2e_per_kwh, coal.pue) == (900.0, None)
    assert (plain.grid_gco2e_per_kwh, plain.pue) == (None, 1.3)
    assert Category.objects.get(name="green").strategy == "carbon"

    config = routing_config.get(recheck=True)
    # The defaults resolved: the global grid intensity (the one the accounting uses), PUE 1.
    assert config.carbon == {"hydro": (20.0, 1.1), "coal": (900.0, 1.0), "plain": (400.0, 1.3)}
    green = config.categories["green"]
    assert (green.strategy, green.chain) == ("carbon", ("coal/small", "plain/mid", "hydro/big"))
    # g per million tokens: hydro 1.0 × 20 × 1.1 = 22, coal 0.05 × 900 = 45, plain 0.1 × 400 × 1.3 = 52.
    ranking = rank(
        green.strategy, green.chain, config.models, prompt_tokens=100, completion_tokens=100, now=datetime.now(UTC)
    )
    assert ranking.chain == ("hydro/big", "coal/small", "plain/mid")

    # Dropping the keys goes back to the defaults; a category's strategy stays unless the file names it.
    sync(tmp_path, CARBON.replace("    grid_gco2e_per_kwh: 20\n", "").replace("    strategy: carbon\n", ""))
    assert Provider.objects.get(name="hydro").grid_gco2e_per_kwh == 20.0  # (a key left out is left alone)
    assert Category.objects.get(name="green").strategy == "carbon"
    sync(
        tmp_path,
        CARBON.replace("strategy: carbon", "strategy: null").replace(
            "grid_gco2e_per_kwh: 20", "grid_gco2e_per_kwh: null"
        ),
    )
    assert Provider.objects.get(name="hydro").grid_gco2e_per_kwh is None
    assert Category.objects.get(name="green").strategy == "ordered"


def test_it_refuses_an_unknown_strategy(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        CARBON.replace("strategy: carbon", "strategy: fastest"),
        "categories[0] (green).strategy: 'fastest' is not one of ordered, latency, cost, carbon",
    )


def test_it_refuses_an_impossible_grid_or_pue(tmp_path: Path) -> None:
    assert_refused(
        tmp_path,
        CARBON.replace("grid_gco2e_per_kwh: 20", "grid_gco2e_per_kwh: -5").replace("pue: 1.1", "pue: 0.8"),
        "providers[0] (hydro).grid_gco2e_per_kwh: expected a number >= 0, got -5",
        "providers[0] (hydro).pue: expected a number >= 1, got 0.8",
    )


def test_a_model_is_put_on_the_public_status_page_by_public_true(tmp_path: Path) -> None:
    sync(tmp_path, CONTRACT_EXAMPLE)
    assert LLMModel.objects.get().public is False  # not public unless the file says so

    sync(tmp_path, CONTRACT_EXAMPLE.replace("        monitor: true\n", "        monitor: true\n        public: true\n"))
    assert LLMModel.objects.get().public is True

    assert_refused(
        tmp_path,
        CONTRACT_EXAMPLE.replace("        monitor: true\n", "        monitor: true\n        public: yes please\n"),
        "providers[0] (openai).models[0].public: expected true or false, got 'yes please'",
    )


def test_the_demo_models_are_public(db: None) -> None:
    seed_defaults()
    assert sorted(m.model_id for m in LLMModel.objects.filter(public=True)) == ["demo/demo-fast", "demo/demo-smart"]
