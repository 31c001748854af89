"""Writes for API keys and teams.

The raw secret of a key exists only in what ``apikey_create`` and ``apikey_rotate`` return: only its hash
is stored, and nothing here logs it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from spignosapi.errors import Reason, ServiceError

from .models import ApiKey, Team, new_secret

# The fields a staff user sets on a key (the API, the admin and createapikey share them).
KEY_SETTINGS = (
    "name",
    "team",
    "is_staff",
    "is_active",
    "expires_at",
    "rpm_limit",
    "tpm_limit",
    "max_tokens_cap",
    "max_prompt_tokens",
    "max_parallel_requests",
    "allowed_models",
    "tags",
)
TEAM_SETTINGS = (
    "name",
    "rpm_limit",
    "tpm_limit",
    "max_tokens_cap",
    "max_prompt_tokens",
    "max_parallel_requests",
    "allowed_models",
)


def unique_secret() -> tuple[str, str, str]:
    """``new_secret()`` whose prefix no key has yet (the prefix names the key in URLs)."""
    while True:
        raw, prefix, hashed = new_secret()
        # 48 random bits: a clash is all but impossible, but it would make one key unreachable by URL.
        if not ApiKey.objects.filter(prefix=prefix).exists():
            return raw, prefix, hashed


def apikey_create(
    *,
    name: str,
    is_staff: bool = False,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    owner: User | None = None,
    team: Team | None = None,
    **more: Any,
) -> tuple[ApiKey, str]:
    """Create a key; return it with the raw secret, which is never stored and cannot be shown again.

    ``more``: any other of ``KEY_SETTINGS`` (``expires_at``, ``allowed_models``, ``tags``, …).
    """
    unknown = set(more) - set(KEY_SETTINGS)
    if unknown:
        raise TypeError(f"unknown key settings: {sorted(unknown)}")
    raw, prefix, hashed = unique_secret()
    key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        hashed_key=hashed,
        is_staff=is_staff,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        owner=owner,
        team=team,
        **more,
    )
    return key, raw


def _save_settings(row: ApiKey | Team, allowed: tuple[str, ...], what: str, changes: dict[str, Any]) -> None:
    """Set ``changes`` (only fields named in ``allowed``) on ``row`` and save it: one audited update."""
    unknown = set(changes) - set(allowed)
    if unknown:
        raise TypeError(f"unknown {what} settings: {sorted(unknown)}")
    for field, value in changes.items():
        setattr(row, field, value)
    row.save()


def apikey_update(*, key: ApiKey, **changes: Any) -> ApiKey:
    """Change some of a key's ``KEY_SETTINGS``; every process sees the change within a second."""
    _save_settings(key, KEY_SETTINGS, "key", changes)
    return key


def apikey_rotate(*, key: ApiKey, grace_seconds: int | None = None, now: datetime | None = None) -> tuple[ApiKey, str]:
    """Give ``key`` a new secret (returned once, never stored); the old one keeps working for ``grace_seconds``
    (default ``KEY_ROTATION_GRACE_S``; 0: it stops now). The key's prefix becomes the new secret's.

    Only the secret just replaced has a grace period: rotating again within it ends the older one's.
    """
    grace = settings.KEY_ROTATION_GRACE_S if grace_seconds is None else grace_seconds
    now = now or timezone.now()
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        raw, key.prefix, hashed = unique_secret()
        key.previous_hashed_key = key.hashed_key if grace > 0 else None
        key.previous_key_expires_at = now + timedelta(seconds=grace) if grace > 0 else None
        key.hashed_key = hashed
        key.save()
    return key, raw


def apikey_delete(*, key: ApiKey) -> None:
    """Delete a key (its usage rows and jobs keep their numbers, without it). 409 while it owns RAG
    collections: disable it instead, or give them away first."""
    try:
        key.delete()
    except ProtectedError:
        raise ServiceError(
            f"The key {key.prefix!r} owns RAG collections: disable it (is_active: false) instead.",
            reason=Reason.CONFLICT,
            code="key_in_use",
        ) from None


def team_create(**values: Any) -> Team:
    return Team.objects.create(**values)


def team_update(*, team: Team, **changes: Any) -> Team:
    """Change some of a team's ``TEAM_SETTINGS``; its keys' limits follow within a second."""
    _save_settings(team, TEAM_SETTINGS, "team", changes)
    return team


def team_delete(*, team: Team) -> None:
    """Delete a team without keys. 409 while keys (or RAG collections) belong to it."""
    keys = team.keys.count()
    if keys:
        raise ServiceError(
            f"The team {team.name!r} has {keys} key{'s' if keys != 1 else ''}: move or delete them first.",
            reason=Reason.CONFLICT,
            code="team_has_keys",
        )
    try:
        team.delete()
    except ProtectedError:
        raise ServiceError(
            f"The team {team.name!r} owns RAG collections: delete or give them away first.",
            reason=Reason.CONFLICT,
            code="team_in_use",
        ) from None
