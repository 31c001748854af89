"""Writes for API keys."""

from __future__ import annotations

from django.contrib.auth.models import User

from .models import ApiKey, Team, new_secret


def apikey_create(
    *,
    name: str,
    is_staff: bool = False,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    owner: User | None = None,
    team: Team | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; return it with the raw secret, which is never stored and cannot be shown again."""
    raw, prefix, hashed = new_secret()
    key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        hashed_key=hashed,
        is_staff=is_staff,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        owner=owner,
        team=team,
    )
    return key, raw
