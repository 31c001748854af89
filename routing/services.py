"""Writes to the routing configuration; each one makes every process reload its routing snapshot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import DecimalField

from audit.services import audit_reset
from energy.services import CoefficientConflict, coefficient_sync, energy_spec_errors
from spignosapi.api.errors import Conflict, InvalidRequest, NotFound

from .breaker import default_breakers
from .models import (
    ALIAS_NAME,
    RESERVED_MODEL_NAMES,
    Category,
    ChainEntry,
    CircuitBreaker,
    LLMModel,
    ModelAlias,
    ModelLatency,
    Provider,
    Strategy,
    shadowed_name,
)
from .selectors import LatencyFigure, latency_figures, routing_config


def routing_changed() -> None:
    """This process reloads now; every other one once the change is committed."""
    routing_config.invalidate()
    transaction.on_commit(routing_config.bump)


def model_by_id(model_id: str, *, param: str = "model") -> LLMModel:
    provider, _, name = model_id.partition("/")
    model = LLMModel.objects.select_related("provider").filter(provider__name=provider, name=name).first()
    if model is None:
        raise NotFound(f"The model {model_id!r} does not exist.", code="model_not_found", param=param)
    return model


def normalized_keywords(keywords: Sequence[str]) -> list[str]:
    return sorted({k.strip().lower() for k in keywords if k.strip()})


def _set_chain(category: Category, model_ids: Sequence[str]) -> None:
    if len(set(model_ids)) != len(model_ids):
        raise InvalidRequest("A model may appear only once in a chain.", code="duplicate_model", param="models")
    models = [model_by_id(model_id, param="models") for model_id in model_ids]
    # Row by row, keeping the entries that stay: each change is one audit entry (a model moved, added or
    # removed), which a delete-all-and-bulk-create would neither log nor make readable.
    current = {entry.model_id: entry for entry in ChainEntry.objects.filter(category=category)}
    wanted = {model.pk for model in models}
    for model_pk, entry in current.items():
        if model_pk not in wanted:
            entry.delete()
    for index, model in enumerate(models):
        kept = current.get(model.pk)
        if kept is None:
            ChainEntry.objects.create(category=category, model=model, position=index)
        elif kept.position != index:
            kept.position = index
            kept.save(update_fields=["position"])


@transaction.atomic
def category_upsert(
    *,
    name: str,
    description: str | None = None,
    keywords: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    examples: Sequence[str] | None = None,
    strategy: str | None = None,
) -> tuple[Category, bool]:
    if ModelAlias.objects.filter(name=name).exists():
        raise Conflict(f"{name!r} is a model alias: a category cannot shadow it.", code="alias_conflict", param="name")
    values: dict[str, Any] = {}
    if description is not None:
        values["description"] = description
    if keywords is not None:
        values["keywords"] = normalized_keywords(keywords)
    if examples is not None:
        values["examples"] = [e.strip() for e in examples if e.strip()]
    if strategy is not None:
        values["strategy"] = Strategy(strategy)  # (the API's serializer checked it: a wrong one raises here)
    # Created with its values (one audit entry, not a create and then an update).
    category, created = Category.objects.get_or_create(name=name, defaults=values)
    if not created:
        for field_name, value in values.items():
            setattr(category, field_name, value)
        category.save()
    if models is not None:
        _set_chain(category, models)
    routing_changed()
    return category, created


@transaction.atomic
def category_delete(*, name: str) -> None:
    category = Category.objects.filter(name=name).first()
    if category is None:
        raise NotFound(f"The category {name!r} does not exist.", code="category_not_found")
    if category.builtin:
        raise Conflict(f"The built-in category {name!r} cannot be deleted.", code="builtin_category")
    aliases = sorted(category.aliases.values_list("name", flat=True))
    if aliases:
        raise Conflict(
            f"The category {name!r} is the target of the model alias(es) {', '.join(aliases)}: "
            "delete or retarget them first.",
            code="alias_target",
        )
    category.delete()
    routing_changed()


@transaction.atomic
def model_mapping_set(*, category: str, models: Sequence[str]) -> Category:
    found = Category.objects.filter(name=category).first()
    if found is None:
        raise NotFound(f"The category {category!r} does not exist.", code="category_not_found", param="category")
    _set_chain(found, models)
    found.save(update_fields=["updated_at"])
    routing_changed()
    return found


BREAKER_RESET_FIELDS = ("state", "consecutive_failures", "opened_at", "trial_started_at", "last_error")


@transaction.atomic
def breaker_reset(*, model: LLMModel) -> None:
    """Close ``model``'s breaker by hand (the API and the admin), recorded in the audit log with its before/after
    (the breaker's own transitions under traffic are not: they are not anyone's change)."""
    before = CircuitBreaker.objects.filter(model=model).values(*BREAKER_RESET_FIELDS).first()
    default_breakers().reset(model.pk)
    breaker = CircuitBreaker.objects.get(model=model)
    after = {name: getattr(breaker, name) for name in BREAKER_RESET_FIELDS}
    # No row yet: the breaker was closed, as the reset leaves it.
    audit_reset(breaker, before=before or after, after=after, object_repr=model.model_id)


# --- latency figures (monitoring publishes, the latency strategy reads) -------------------------------------


def _is_latency_figure(figure: LatencyFigure) -> bool:
    p50, samples, measured_at = figure.p50_ttft_ms, figure.samples, figure.measured_at
    return (
        _is_number(p50)
        and 0 <= p50 < float("inf")  # (NaN fails both)
        and isinstance(samples, int)
        and samples >= 0
        and isinstance(measured_at, datetime)
        and measured_at.tzinfo is not None
    )


def publish_latency_figures(figures: Mapping[str, LatencyFigure]) -> int:
    """Store each model's recent p50 TTFT for the latency strategy; every process sees it at its next check.

    ``figures``: model id (``<provider>/<model>``) → its figure. Monitoring calls this after each roll-up with
    the figures it has; a model it leaves out keeps its last figure, which goes stale
    (``ROUTING_LATENCY_MAX_AGE_S``) and then no longer ranks. Ids of models that do not exist (any more) are
    ignored. Returns how many figures were stored. Raises ``ValueError`` (nothing stored) for a figure that
    cannot be one: a negative or non-finite p50, a negative sample count, a naive ``measured_at``.
    """
    for model_id, figure in figures.items():
        if not _is_latency_figure(figure):
            raise ValueError(f"not a latency figure for {model_id!r}: {figure!r}")
    wanted = {tuple(model_id.split("/", 1)) for model_id in figures if "/" in model_id}
    models = {
        m.model_id: m
        for m in LLMModel.objects.select_related("provider").filter(
            provider__name__in={p for p, _ in wanted}, name__in={n for _, n in wanted}
        )
        if m.model_id in figures
    }
    rows = [
        ModelLatency(
            model=model,
            p50_ttft_ms=figures[model_id].p50_ttft_ms,
            samples=figures[model_id].samples,
            measured_at=figures[model_id].measured_at,
        )
        for model_id, model in models.items()
    ]
    with transaction.atomic():
        # One statement whatever the number of models: an upsert on the model's unique key.
        ModelLatency.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["model"],
            update_fields=["p50_ttft_ms", "samples", "measured_at", "updated_at"],
        )
        latency_figures.invalidate()
        transaction.on_commit(latency_figures.bump)
    return len(rows)


# --- model aliases ----------------------------------------------------------------------------------------------


def alias_target(target: str, *, param: str = "target") -> tuple[Category | None, LLMModel | None]:
    """(category, model) for a target as the API and YAML write it: a category's name, or a model id
    (``<provider>/<model>``: the slash tells them apart, a category's name being a slug)."""
    if "/" in target:
        return None, model_by_id(target, param=param)
    category = Category.objects.filter(name=target).first()
    if category is None:
        if ModelAlias.objects.filter(name=target).exists():
            message = f"{target!r} is a model alias: an alias names a category or a model."
            raise InvalidRequest(message, code="invalid_target", param=param)
        raise NotFound(f"The category {target!r} does not exist.", code="category_not_found", param=param)
    return category, None


def alias_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as an alias's name (its form; not what it may shadow), if anything."""
    limit = ModelAlias._meta.get_field("name").max_length
    if limit is not None and len(name) > limit:
        return f"An alias's name has at most {limit} characters."
    try:
        ALIAS_NAME(name)
    except ValidationError as exc:
        return " ".join(exc.messages)
    return None


@transaction.atomic
def alias_upsert(*, name: str, target: str) -> tuple[ModelAlias, bool]:
    """Create the alias ``name`` → ``target`` (a category or a model id), or point it elsewhere."""
    problem = alias_name_problem(name)
    if problem:
        raise InvalidRequest(problem, code="invalid", param="name")
    shadowed = shadowed_name(name)
    if shadowed:
        raise Conflict(shadowed, code="alias_conflict", param="name")
    category, model = alias_target(target)
    # (update_or_create: two requests creating the same alias at once end with one row, not a 500)
    alias, created = ModelAlias.objects.update_or_create(name=name, defaults={"category": category, "model": model})
    routing_changed()
    return alias, created


@transaction.atomic
def alias_delete(*, name: str) -> None:
    deleted, _ = ModelAlias.objects.filter(name=name).delete()
    if not deleted:
        raise NotFound(f"The model alias {name!r} does not exist.", code="alias_not_found")
    routing_changed()


# --- sync_providers: providers, models and categories from a YAML document (contract section 5) -------------

PROVIDER_KEYS = {
    "name",
    "kind",
    "base_url",
    "api_key_env",
    "timeout_s",
    "models",
    "api_version",
    "connect_timeout_s",
    "first_token_timeout_s",
    "drop_params",
    "enabled",
    "grid_gco2e_per_kwh",
    "pue",
}
MODEL_KEYS = {
    "name",
    "price_in_per_m",
    "price_out_per_m",
    "energy_kwh_per_m",
    "energy",
    "monitor",
    "supports_tools",
    "supports_structured_output",
    "public",
    "context_window",
    "rpm_budget",
    "tpm_budget",
    "enabled",
    "kind",
}
CATEGORY_KEYS = {"name", "description", "keywords", "models", "examples", "strategy"}
SECTIONS = ("providers", "categories", "aliases")


class SyncError(Exception):
    """The document is invalid; nothing was written. ``errors`` names each problem by its place in the file."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass
class SyncReport:
    """What a sync did (or, dry, would do): per table, how many rows were created, updated, left, deleted."""

    counts: dict[str, Counter[str]] = field(
        default_factory=lambda: {table: Counter() for table in ("providers", "models", "categories", "aliases")}
    )
    deleted: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    energy_versions: int = 0  # new energy coefficient versions recorded (energy app)

    @property
    def changed(self) -> bool:
        return any(c["created"] or c["updated"] or c["deleted"] for c in self.counts.values())

    def lines(self) -> list[str]:
        lines = [
            f"{table}: {c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged, "
            f"{c['deleted']} deleted"
            for table, c in self.counts.items()
            if table != "aliases" or any(c.values())  # (a file without aliases reports as it did before them)
        ]
        if self.energy_versions:
            lines.append(f"energy coefficients: {self.energy_versions} new version(s)")
        return lines


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """Structural checks of the document, collecting every problem rather than stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def mapping(self, value: Any, where: str, allowed: set[str], required: Sequence[str]) -> bool:
        if not isinstance(value, dict):
            self.errors.append(f"{where}: expected a mapping")
            return False
        for key in sorted(set(value) - allowed, key=str):
            hint = " (keys stay in the environment: name the variable with api_key_env)" if key == "api_key" else ""
            self.errors.append(f"{where}: unknown key {key!r}{hint}")
        for key in required:
            if value.get(key) in (None, ""):
                self.errors.append(f"{where}: {key} is required")
        return True

    def items(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.errors.append(f"{where}: expected a list")
            return []
        return value

    def number(self, data: dict[str, Any], key: str, where: str, *, minimum: float, nullable: bool = False) -> None:
        if key not in data or (nullable and data[key] is None):
            return
        value = data[key]
        if not _is_number(value) or value < minimum:
            self.errors.append(f"{where}.{key}: expected a number >= {minimum:g}, got {value!r}")

    def integer(self, data: dict[str, Any], key: str, where: str, *, nullable: bool = False) -> None:
        if key not in data or (nullable and data[key] is None):
            return
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
            self.errors.append(f"{where}.{key}: expected a positive integer, got {data[key]!r}")

    def boolean(self, data: dict[str, Any], key: str, where: str) -> None:
        if key in data and not isinstance(data[key], bool):
            self.errors.append(f"{where}.{key}: expected true or false, got {data[key]!r}")

    def string(self, data: dict[str, Any], key: str, where: str, *, nullable: bool = False) -> None:
        if key not in data or (nullable and data[key] is None):
            return
        if not isinstance(data[key], str):
            self.errors.append(f"{where}.{key}: expected a string, got {data[key]!r}")


def _place(section: str, index: int, entry: Any) -> str:
    """How errors name an entry: ``providers[0] (openai)``."""
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"{section}[{index}] ({name})" if isinstance(name, str) and name else f"{section}[{index}]"


def _check_document(document: Any) -> list[str]:
    check = _Checker()
    if not isinstance(document, dict) or not (set(SECTIONS) & set(document)):
        return ["the document must be a mapping with providers, categories and/or aliases"]
    check.mapping(document, "(top level)", set(SECTIONS), [])
    provider_names: set[str] = set()
    for i, provider in enumerate(check.items(document.get("providers"), "providers")):
        _check_provider(check, provider, _place("providers", i, provider), provider_names)
    category_names: set[str] = set()
    for i, category in enumerate(check.items(document.get("categories"), "categories")):
        _check_category(check, category, _place("categories", i, category), category_names)
    _check_aliases(check, document.get("aliases"))
    return check.errors


def _check_aliases(check: _Checker, aliases: Any) -> None:
    """``aliases:``, a mapping of client-facing names to targets (what they name is checked later)."""
    if aliases is None:
        return
    if not isinstance(aliases, dict):
        check.errors.append("aliases: expected a mapping of names to a category or a model id")
        return
    for name, target in aliases.items():
        if not isinstance(name, str):
            check.errors.append(f"aliases: the name {name!r} must be a string (quote it)")
            continue
        problem = alias_name_problem(name)
        if problem:
            check.errors.append(f"aliases.{name}: {problem}")
        elif name in RESERVED_MODEL_NAMES:
            check.errors.append(f"aliases.{name}: {name!r} is reserved: it asks for the router")
        if not isinstance(target, str) or not target:
            check.errors.append(f"aliases.{name}: expected a category or a model id, got {target!r}")


def _check_provider(check: _Checker, provider: Any, where: str, seen: set[str]) -> None:
    """One provider entry and its models; ``seen``: the provider names met so far (a repeat is an error)."""
    local = isinstance(provider, dict) and provider.get("kind") == Provider.Kind.LOCAL
    if not check.mapping(provider, where, PROVIDER_KEYS, ["name", "kind"] if local else ["name", "kind", "base_url"]):
        return
    name = provider.get("name")
    if isinstance(name, str):
        if name in seen:
            check.errors.append(f"{where}: provider {name!r} appears twice")
        seen.add(name)
    for key in ("name", "base_url", "api_version"):
        check.string(provider, key, where)
    check.string(provider, "api_key_env", where, nullable=True)
    kinds = set(Provider.Kind.values)
    if "kind" in provider and provider["kind"] not in kinds:
        check.errors.append(f"{where}.kind: unknown kind {provider['kind']!r} (one of {', '.join(sorted(kinds))})")
    base_url = provider.get("base_url")
    if isinstance(base_url, str) and base_url:
        # Checked here rather than by URLField, which refuses single-label hosts such as http://ollama:11434.
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(base_url) > 300:
            check.errors.append(f"{where}.base_url: {base_url!r} is not an http(s) URL")
    for key in ("timeout_s", "connect_timeout_s"):
        check.number(provider, key, where, minimum=0.1)
    check.number(provider, "first_token_timeout_s", where, minimum=0.1, nullable=True)
    check.number(provider, "grid_gco2e_per_kwh", where, minimum=0, nullable=True)
    check.number(provider, "pue", where, minimum=1, nullable=True)
    for key in ("enabled", "drop_params"):
        check.boolean(provider, key, where)
    model_names: set[str] = set()
    for j, model in enumerate(check.items(provider.get("models"), f"{where}.models")):
        _check_model(check, model, f"{where}.models[{j}]", model_names)


def _check_model(check: _Checker, model: Any, where: str, seen: set[str]) -> None:
    """One model entry of a provider; ``seen``: the provider's model names met so far."""
    if not check.mapping(model, where, MODEL_KEYS, ["name"]):
        return
    check.string(model, "name", where)
    if isinstance(model.get("name"), str):
        if model["name"] in seen:
            check.errors.append(f"{where}: model {model['name']!r} appears twice")
        seen.add(model["name"])
    for key in ("price_in_per_m", "price_out_per_m"):
        check.number(model, key, where, minimum=0)
    check.number(model, "energy_kwh_per_m", where, minimum=0, nullable=True)
    check.errors.extend(energy_spec_errors(model, where))
    for key in ("monitor", "public", "enabled", "supports_tools", "supports_structured_output"):
        check.boolean(model, key, where)
    if "kind" in model and model["kind"] not in LLMModel.Kind.values:
        check.errors.append(f"{where}.kind: {model['kind']!r} is not one of chat, embedding")
    check.integer(model, "context_window", where)
    for key in ("rpm_budget", "tpm_budget"):
        check.integer(model, key, where, nullable=True)


def _check_category(check: _Checker, category: Any, where: str, seen: set[str]) -> None:
    """One category entry; ``seen``: the category names met so far."""
    if not check.mapping(category, where, CATEGORY_KEYS, ["name"]):
        return
    check.string(category, "name", where)
    check.string(category, "description", where)
    strategy = category.get("strategy")
    if strategy is not None and strategy not in Strategy.values:
        check.errors.append(f"{where}.strategy: {strategy!r} is not one of {', '.join(Strategy.values)}")
    name = category.get("name")
    if isinstance(name, str):
        if name in seen:
            check.errors.append(f"{where}: category {name!r} appears twice")
        seen.add(name)
    for key in ("keywords", "models", "examples"):
        values = check.items(category.get(key), f"{where}.{key}")
        if not all(isinstance(v, str) for v in values):
            check.errors.append(f"{where}.{key}: expected a list of strings")
    models = category.get("models")
    if isinstance(models, list) and len(set(map(str, models))) != len(models):
        check.errors.append(f"{where}.models: a model may appear only once in a chain")


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value))


def _apply_fields(obj: Any, values: dict[str, Any]) -> bool:
    """Set the fields that differ; whether any did."""
    changed = False
    for name, value in values.items():
        current = getattr(obj, name)
        if isinstance(obj._meta.get_field(name), DecimalField):
            value, current = _decimal(value), _decimal(current)
        if current != value:
            setattr(obj, name, value)
            changed = True
    return changed


def _save(obj: Any, where: str, created: bool, changed: bool, counts: Counter[str], exclude: list[str]) -> None:
    if created or changed:
        try:
            obj.full_clean(exclude=exclude)
        except ValidationError as exc:
            problems = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in exc.message_dict.items())
            raise SyncError([f"{where}: {problems}"]) from None
        obj.save()
    counts["created" if created else "updated" if changed else "unchanged"] += 1


def _sync_provider(spec: dict[str, Any], where: str, report: SyncReport) -> None:
    values = {key: spec[key] for key in PROVIDER_KEYS - {"name", "models"} if key in spec}
    for key in ("api_key_env", "api_version"):
        if key in values and values[key] is None:
            values[key] = ""
    provider = Provider.objects.filter(name=spec["name"]).first()
    created = provider is None
    if provider is None:
        provider = Provider(name=spec["name"])
    changed = _apply_fields(provider, values)
    _save(provider, where, created, changed, report.counts["providers"], ["base_url"])
    for j, model_spec in enumerate(spec.get("models") or []):
        model_values = {key: model_spec[key] for key in MODEL_KEYS - {"name"} if key in model_spec}
        model = LLMModel.objects.filter(provider=provider, name=model_spec["name"]).first()
        model_created = model is None
        if model is None:
            model = LLMModel(provider=provider, name=model_spec["name"])
        model_values.pop("energy", None)
        model_changed = _apply_fields(model, model_values)
        _save(model, f"{where}.models[{j}]", model_created, model_changed, report.counts["models"], ["provider"])
        if "energy_kwh_per_m" in model_spec:
            try:
                recorded = coefficient_sync(
                    model_id=model.model_id, central=model_spec["energy_kwh_per_m"], spec=model_spec.get("energy")
                )
            except CoefficientConflict as exc:
                raise SyncError([f"{where}.models[{j}].energy: {exc}"]) from None
            report.energy_versions += recorded


def _sync_category(spec: dict[str, Any], where: str, report: SyncReport) -> None:
    category = Category.objects.filter(name=spec["name"]).first()
    created = category is None
    if category is None:
        category = Category(name=spec["name"])
    values: dict[str, Any] = {}
    if "description" in spec:
        values["description"] = spec["description"] or ""
    if "keywords" in spec:
        values["keywords"] = normalized_keywords(spec["keywords"] or [])
    if "examples" in spec:
        values["examples"] = [str(e).strip() for e in spec["examples"] or [] if str(e).strip()]
    if "strategy" in spec:  # (null: the default)
        values["strategy"] = spec["strategy"] or Strategy.ORDERED
    changed = _apply_fields(category, values)
    chain: list[str] | None = None
    if "models" in spec:
        wanted = list(spec["models"] or [])
        current = [] if created else [e.model.model_id for e in category.chain.select_related("model__provider")]
        chain = wanted if wanted != current else None
    _save(category, where, created, changed or chain is not None, report.counts["categories"], [])
    if chain is not None:
        _set_chain(category, chain)


def _chain_errors(categories: list[Any], listed: set[tuple[str, str]], *, prune: bool) -> list[str]:
    """A category's chain may name a model of the document (``listed``: (provider, model) names) or one in
    the database that the sync keeps (with ``prune``, only the listed ones are kept)."""
    errors: list[str] = []
    known = set(listed)
    for provider_name, model_name in LLMModel.objects.values_list("provider__name", "name"):
        if not prune or (provider_name, model_name) in listed:
            known.add((provider_name, model_name))
    for i, category in enumerate(categories):
        for model_id in category.get("models") or []:
            provider_name, _, model_name = model_id.partition("/")
            if (provider_name, model_name) not in known:
                state = (
                    "would be pruned"
                    if prune and LLMModel.objects.filter(provider__name=provider_name, name=model_name).exists()
                    else "is not in the file nor in the database"
                )
                errors.append(f"categories[{i}] ({category['name']}).models: {model_id!r} {state}")
    return errors


def _alias_errors(
    aliases: dict[str, str], categories: list[Any], listed: set[tuple[str, str]], *, prune: bool
) -> list[str]:
    """An alias names a category or a model of the document or of the database that the sync keeps, and
    does not shadow one (nor the other way round)."""
    category_names = {c["name"] for c in categories}
    kept_categories = Category.objects.all() if not prune else Category.objects.filter(builtin=True)
    category_names.update(kept_categories.values_list("name", flat=True))
    doomed_categories = set() if not prune else set(Category.objects.values_list("name", flat=True)) - category_names
    models = {f"{p}/{m}" for p, m in listed}
    doomed_models = set()
    for provider_name, model_name in LLMModel.objects.values_list("provider__name", "name"):
        if not prune or (provider_name, model_name) in listed:
            models.add(f"{provider_name}/{model_name}")
        else:
            doomed_models.add(f"{provider_name}/{model_name}")
    errors: list[str] = []
    for name, target in aliases.items():
        if name in category_names or name in models:
            kind = "category" if name in category_names else "model"
            errors.append(f"aliases.{name}: {name!r} is a {kind}: an alias cannot shadow it")
        if target in (models if "/" in target else category_names):
            continue
        if target in doomed_models or target in doomed_categories:
            errors.append(f"aliases.{name}: {target!r} would be pruned")
        else:
            kind = "model" if "/" in target else "category"
            errors.append(f"aliases.{name}: {target!r} is not a {kind} in the file nor in the database")
    return errors


def _sync_aliases(aliases: dict[str, str], report: SyncReport) -> None:
    current = {a.name: a for a in ModelAlias.objects.select_related("category", "model__provider")}
    for name, target in aliases.items():
        alias = current.get(name)
        if alias is not None and alias.target == target:
            report.counts["aliases"]["unchanged"] += 1
            continue
        category, model = alias_target(target)
        ModelAlias.objects.update_or_create(name=name, defaults={"category": category, "model": model})
        report.counts["aliases"]["created" if alias is None else "updated"] += 1


def _prune_aliases(mentioned: set[str], report: SyncReport) -> None:
    for alias in ModelAlias.objects.exclude(name__in=mentioned):
        report.deleted.append(f"alias {alias.name}")
        report.counts["aliases"]["deleted"] += 1
        alias.delete()


def _prune_providers(listed_providers: set[str], listed: set[tuple[str, str]], report: SyncReport) -> None:
    """Delete the providers the document does not list, and the models of listed providers it does not."""
    for provider in Provider.objects.exclude(name__in=listed_providers):
        report.deleted.append(f"provider {provider.name} (and its {provider.models.count()} models)")
        report.counts["providers"]["deleted"] += 1
        report.counts["models"]["deleted"] += provider.models.count()
        provider.delete()
    for model in LLMModel.objects.filter(provider__name__in=listed_providers).select_related("provider"):
        if (model.provider.name, model.name) not in listed:
            report.deleted.append(f"model {model.model_id}")
            report.counts["models"]["deleted"] += 1
            model.delete()


def _prune_categories(mentioned: set[str], report: SyncReport) -> None:
    """Delete the custom categories the document does not mention (built-in ones stay)."""
    for category in Category.objects.exclude(name__in=mentioned).filter(builtin=False):
        report.deleted.append(f"category {category.name}")
        report.counts["categories"]["deleted"] += 1
        category.delete()


def providers_sync(*, document: Any, prune: bool = False, dry_run: bool = False) -> SyncReport:
    """Create or update the providers, models, categories and model aliases of a ``sync_providers`` document.

    Idempotent: rows already as described are not written. Keys a provider, model or category leaves out
    keep their current values. With ``prune``, providers, models of the listed providers, custom
    categories and aliases that the document does not mention are deleted (built-in categories never are). Either
    everything is written or, on any problem (``SyncError``), nothing; ``dry_run`` reports and writes nothing.
    """
    errors = _check_document(document)
    if errors:
        raise SyncError(errors)
    providers = list(document.get("providers") or [])
    categories = list(document.get("categories") or [])
    listed = {(p["name"], m["name"]) for p in providers for m in p.get("models") or []}
    aliases: dict[str, str] = dict(document.get("aliases") or {})
    errors = _chain_errors(categories, listed, prune=prune) + _alias_errors(aliases, categories, listed, prune=prune)
    if errors:
        raise SyncError(errors)

    report = SyncReport()
    with transaction.atomic():
        if prune:  # first: an alias protects its category or model from deletion
            _prune_aliases(set(aliases), report)
        for i, spec in enumerate(providers):
            _sync_provider(spec, f"providers[{i}] ({spec['name']})", report)
        if prune:
            _prune_providers({p["name"] for p in providers}, listed, report)
        for i, spec in enumerate(categories):
            _sync_category(spec, f"categories[{i}] ({spec['name']})", report)
        if prune:
            _prune_categories({c["name"] for c in categories}, report)
        _sync_aliases(aliases, report)
        for category in Category.objects.filter(chain__isnull=True):
            report.warnings.append(f"category {category.name} has no model in its chain")
        if dry_run:
            transaction.set_rollback(True)
        elif report.changed:
            routing_changed()
    return report
