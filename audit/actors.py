"""Who made a change: the request being served, and the actor stamped on each audit entry it writes.

django-auditlog's own middleware knows only a Django user, and is sync-only (a thread hop per request under
ASGI). Here ``audit.middleware`` keeps the request in a context variable (nothing else on the hot path), and
``stamp_actor`` reads it only when an entry is written: from the admin (or a staff session on the API) the
Django user; from the API with a key, the key's name and prefix, and its owner as the entry's user, if any.
"""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from typing import Any

from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.http import HttpRequest

from accounts.authentication import ApiKeyPrincipal
from accounts.selectors import KeyInfo
from spignosapi.logs import request_id_var

current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


def current_request_id() -> str | None:
    """The correlation id of an entry (``AUDITLOG_CID_GETTER``): its request's ``X-Request-ID``."""
    return request_id_var.get()


def actor_of(request: HttpRequest) -> tuple[dict[str, Any], AbstractBaseUser | None] | None:
    """``({"type": "user"|"key", "name", "prefix", "user"}, the Django user or None)``, or None (anonymous)."""
    user = getattr(request, "user", None)  # DRF puts a key's principal here once it has authenticated it
    if isinstance(user, ApiKeyPrincipal):
        # The key as it called (DRF keeps its KeyInfo on the request): its row may be gone or renamed by the
        # very change being logged (a key that deletes or rotates itself).
        key = getattr(request, "auth", None)
        if not isinstance(key, KeyInfo):
            return None
        owner = get_user_model()._default_manager.filter(pk=key.owner_id).first() if key.owner_id else None
        payload = {
            "type": "key",
            "name": key.name,
            "prefix": key.prefix or None,
            "user": owner.get_username() if owner is not None else None,
        }
        return payload, owner
    if isinstance(user, AbstractBaseUser) and user.is_authenticated:
        return {"type": "user", "name": user.get_username(), "prefix": None, "user": user.get_username()}, user
    return None


def _address(request: HttpRequest) -> str | None:
    value = str(request.META.get("REMOTE_ADDR") or "")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def stamp_actor(sender: type[LogEntry], instance: LogEntry, **kwargs: Any) -> None:
    """``pre_save`` of a new entry: who made the change, from the request being served (nothing outside one:
    a management command's entries have no actor)."""
    if instance.pk is not None:
        return
    # Read afresh, not from the per-process cache auditlog used: content type ids change when the table is
    # emptied and filled again (a restored dump; the test suite between tests), and a stale id fails the write.
    cached = instance.content_type
    instance.content_type = ContentType.objects.get(app_label=cached.app_label, model=cached.model)
    request = current_request.get()
    if request is None:
        return
    actor = actor_of(request)
    if actor is None:
        return
    payload, user = actor
    instance.additional_data = {**(instance.additional_data or {}), "actor": payload}
    if user is not None and instance.actor_id is None:
        instance.actor = user
        instance.actor_email = getattr(user, "email", None) or None
    if instance.remote_addr is None:
        instance.remote_addr = _address(request)
