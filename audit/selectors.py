"""Reads of the audit log: entries filtered as ``GET /api/v1/audit`` asks, and each one as the API shows it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from auditlog.models import LogEntry
from django.apps import apps
from django.db import models
from django.db.models import Q, QuerySet

from .registry import audited_named, object_type_of
from .services import RESET

ACTIONS = {
    LogEntry.Action.CREATE: "create",
    LogEntry.Action.UPDATE: "update",
    LogEntry.Action.DELETE: "delete",
    LogEntry.Action.ACCESS: "access",
}


def audit_entries(
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Any]:
    """Entries, newest first. ``actor``: a user's name, or a key's name or prefix; ``since`` inclusive,
    ``until`` exclusive."""
    entries: QuerySet[Any] = LogEntry.objects.select_related("content_type", "actor").order_by("-timestamp", "-id")
    if object_type is not None:
        audited = audited_named(object_type)
        if audited is None:
            return entries.none()
        meta = apps.get_model(audited.model)._meta
        # By name, not by a cached content type id (see audit.actors.stamp_actor).
        entries = entries.filter(content_type__app_label=meta.app_label, content_type__model=meta.model_name)
    if object_id is not None:
        entries = entries.filter(object_pk=object_id)
    if actor is not None:
        entries = entries.filter(
            Q(additional_data__actor__name=actor) | Q(additional_data__actor__prefix=actor) | Q(actor__username=actor)
        )
    if since is not None:
        entries = entries.filter(timestamp__gte=since)
    if until is not None:
        entries = entries.filter(timestamp__lt=until)
    return entries


def entry_actor(entry: LogEntry) -> dict[str, Any] | None:
    data = entry.additional_data if isinstance(entry.additional_data, dict) else {}
    actor = data.get("actor")
    if isinstance(actor, dict):
        return {name: actor.get(name) for name in ("type", "name", "prefix", "user")}
    if entry.actor is not None:  # an entry written by other code that set only the user
        name = entry.actor.get_username()
        return {"type": "user", "name": name, "prefix": None, "user": name}
    return None


def entry_action(entry: LogEntry) -> str:
    data = entry.additional_data if isinstance(entry.additional_data, dict) else {}
    if data.get("action") == RESET:
        return RESET
    return ACTIONS.get(entry.action, str(entry.action))


def _datetime_fields(entry: LogEntry) -> set[str]:
    model = entry.content_type.model_class()
    if model is None:
        return set()
    return {f.name for f in model._meta.concrete_fields if isinstance(f, models.DateTimeField)}


def _iso(value: Any) -> Any:
    """auditlog keeps a date-time as its naive UTC ``str()`` ("2026-12-05 00:58:22.346246"): ISO 8601 in UTC."""
    if not isinstance(value, str):
        return value
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")


def entry_payload(entry: LogEntry) -> dict[str, Any]:
    changes = entry.changes if isinstance(entry.changes, dict) else {}
    datetimes = _datetime_fields(entry) & set(changes)
    if datetimes:
        changes = {name: [_iso(v) for v in values] if name in datetimes else values for name, values in changes.items()}
    return {
        "id": entry.pk,
        "at": entry.timestamp,
        "actor": entry_actor(entry),
        "action": entry_action(entry),
        "object_type": object_type_of(entry.content_type.app_label, entry.content_type.model),
        "object_id": entry.object_pk,
        "object_repr": entry.object_repr,
        "changes": {name: list(values) for name, values in changes.items()},
    }
