"""What the audit log records: one list of the audited models, the name each goes by, the fields never copied.

Adding a model to the log is one line in ``AUDITED`` (the ``audit`` app registers them with django-auditlog
when Django starts). A field whose name looks like a secret must be listed in ``exclude``, or start-up fails:
a key's hash, like the key, never reaches the log.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from auditlog.registry import auditlog
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist
from django.db import models
from django.db.models.signals import pre_delete


@dataclass(frozen=True)
class Audited:
    model: str  # "app_label.ModelName"
    object_type: str  # its name in the API (``object_type``, ``?model=``)
    exclude: tuple[str, ...] = ()  # fields never copied into the log
    # False: saves are not logged (traffic moves the row); the explicit entries of audit.services are.
    track_saves: bool = True


AUDITED: tuple[Audited, ...] = (
    Audited("accounts.ApiKey", "key", exclude=("hashed_key", "previous_hashed_key")),
    Audited("accounts.Team", "team"),
    Audited("budgets.Budget", "budget"),
    Audited("routing.Category", "category"),
    Audited("routing.ChainEntry", "chain_entry"),
    Audited("routing.Provider", "provider"),
    Audited("routing.LLMModel", "model"),
    Audited("routing.ModelAlias", "alias"),
    Audited("energy.EnergyCoefficient", "energy_coefficient"),
    Audited("routing.CircuitBreaker", "circuit_breaker", track_saves=False),
)

# Bookkeeping stamps, left out of every model's changes: the entry's own time says when.
STAMPS = ("created_at", "updated_at")
SECRET_FIELD = re.compile(r"hash|secret|password|raw_key|api_key$")


def secret_fields_logged(entry: Audited) -> list[str]:
    """The fields of ``entry``'s model that look like secrets and that the log would copy. A relation is
    logged as the row it points at (a budget's ``api_key`` is the key's name), never a secret."""
    model = apps.get_model(entry.model)
    return [
        field.name
        for field in model._meta.concrete_fields
        if SECRET_FIELD.search(field.name) and field.name not in entry.exclude and not field.is_relation
    ]


def tracked_fields(entry: Audited) -> list[str]:
    """The fields whose changes are logged: the model's own columns (not the rows that point at it, which
    auditlog would list on a create), less its key, its time stamps and ``exclude``."""
    model = apps.get_model(entry.model)
    left_out = {*entry.exclude, *STAMPS}
    return [f.name for f in model._meta.concrete_fields if not f.primary_key and f.name not in left_out]


def register_all() -> None:
    """Register every model of ``AUDITED`` with django-auditlog (once, when Django starts)."""
    for entry in AUDITED:
        leaks = secret_fields_logged(entry)
        if leaks:
            raise ImproperlyConfigured(
                f"audit.registry: {entry.model} has {', '.join(leaks)}, which look like secrets: "
                "add them to its exclude (or rename them)."
            )
        model = apps.get_model(entry.model)
        if entry.track_saves and not auditlog.contains(model):
            auditlog.register(model, include_fields=tracked_fields(entry))
            pre_delete.connect(load_relations, sender=model, dispatch_uid=f"audit.load_relations.{entry.model}")


def load_relations(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """``pre_delete`` of an audited row: read the rows its relations point at while they still exist.

    auditlog writes a delete's entry at ``post_delete``. In a cascade, Django deletes the row a nullable
    relation points at first (a key before its budgets), and the entry would then lose the relation (whose
    budget it was). Every ``pre_delete`` is sent before any row is deleted, so the related rows read here
    are the ones the entry names."""
    for field in instance._meta.concrete_fields:
        if field.many_to_one or field.one_to_one:
            with contextlib.suppress(ObjectDoesNotExist):  # already gone: nothing to name
                getattr(instance, field.name)


@cache
def _by_label() -> dict[str, Audited]:
    return {apps.get_model(entry.model)._meta.label_lower: entry for entry in AUDITED}


def object_type_of(app_label: str, model_name: str) -> str:
    """The API's name for a content type's model (its label for a model no longer audited)."""
    label = f"{app_label}.{model_name}"
    entry = _by_label().get(label)
    return entry.object_type if entry is not None else label


def audited_named(object_type: str) -> Audited | None:
    return next((entry for entry in AUDITED if entry.object_type == object_type), None)


OBJECT_TYPES = tuple(entry.object_type for entry in AUDITED)
