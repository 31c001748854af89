"""Entries the audit log does not get from a model's saves: an operator's explicit actions (breaker resets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auditlog.models import LogEntry
from django.db import models

RESET = "reset"  # additional_data["action"] of a reset: auditlog's actions are create, update, delete, access


def audit_reset(
    instance: models.Model, *, before: Mapping[str, Any], after: Mapping[str, Any], object_repr: str
) -> LogEntry:
    """Record that an operator reset ``instance`` (the request's actor is stamped on it by ``audit.actors``).

    ``before``/``after``: the fields the reset may change, as JSON values; only those that changed are kept.
    """
    changes = {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}
    entry: LogEntry = LogEntry.objects.log_create(
        instance,
        force_log=True,
        action=LogEntry.Action.UPDATE,
        changes=changes,
        object_repr=object_repr,
        additional_data={"action": RESET},
    )
    return entry
