"""Reads for API keys: every key, held in memory per process (see ``spignosapi.snapshots``).

A key's ``KeyInfo`` carries what the hot path needs, with its team's settings already folded in (the
tighter of the two where both set one), so that admitting a request reads nothing but this table. Disabled
and expired keys stay in the table: they are refused with their own 401 (``key_refusal``), not as unknown.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, replace
from datetime import datetime

from spignosapi.snapshots import Snapshot

from .models import KEY_PREFIX, ApiKey, hash_key


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    name: str
    is_staff: bool
    rpm_limit: int | None  # the key's own, else its team's (None: the default)
    tpm_limit: int | None  # the key's own, else its team's (None: the default)
    max_tokens_cap: int | None  # the tighter of the key's and its team's
    max_prompt_tokens: int | None  # the tighter of the key's and its team's
    owner_id: int | None
    hashed_key: str
    # Below, with defaults: code that builds a KeyInfo by position predates them.
    team_id: int | None = None
    prefix: str = ""
    is_active: bool = True
    expires_at: float | None = None  # Unix seconds
    # Set on the entry of a secret that a rotation replaced: it works until then (Unix seconds).
    secret_expires_at: float | None = None
    max_parallel_requests: int | None = None  # the tighter of the key's and its team's (None: no limit)
    allowed_models: tuple[str, ...] = ()  # the key's own patterns (empty: every model)
    team_allowed_models: tuple[str, ...] = ()  # its team's (empty: every model); a model must pass both
    team_name: str | None = None
    team_rpm_limit: int | None = None  # counted once for the whole team
    team_tpm_limit: int | None = None  # counted once for the whole team
    tags: tuple[str, ...] = ()


def _tighter(own: int | None, team: int | None) -> int | None:
    if own is None or team is None:
        return own if team is None else team
    return min(own, team)


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def key_info(key: ApiKey) -> KeyInfo:
    """The ``KeyInfo`` of a key row (its team loaded with it: ``select_related("team")``)."""
    team = key.team
    return KeyInfo(
        id=key.pk,
        name=key.name,
        is_staff=key.is_staff,
        rpm_limit=key.rpm_limit or (team.rpm_limit if team else None),
        tpm_limit=key.tpm_limit or (team.tpm_limit if team else None),
        max_tokens_cap=_tighter(key.max_tokens_cap, team.max_tokens_cap if team else None),
        max_prompt_tokens=_tighter(key.max_prompt_tokens, team.max_prompt_tokens if team else None),
        owner_id=key.owner_id,
        hashed_key=key.hashed_key,
        team_id=key.team_id,
        prefix=key.prefix,
        is_active=key.is_active,
        expires_at=_epoch(key.expires_at),
        max_parallel_requests=_tighter(key.max_parallel_requests, team.max_parallel_requests if team else None),
        allowed_models=tuple(key.allowed_models or ()),
        team_allowed_models=tuple(team.allowed_models or ()) if team else (),
        team_name=team.name if team else None,
        team_rpm_limit=team.rpm_limit if team else None,
        team_tpm_limit=team.tpm_limit if team else None,
        tags=tuple(key.tags or ()),
    )


def key_info_by_id(key_id: int) -> KeyInfo | None:
    """A key's ``KeyInfo`` read from the database now (a worker running a job; not for the hot path)."""
    key = ApiKey.objects.select_related("team").filter(pk=key_id).first()
    return key_info(key) if key is not None else None


def _load_keys() -> dict[str, KeyInfo]:
    table: dict[str, KeyInfo] = {}
    for key in ApiKey.objects.select_related("team"):
        info = table[key.hashed_key] = key_info(key)
        if key.previous_hashed_key and key.previous_key_expires_at is not None:
            grace_end = key.previous_key_expires_at.timestamp()
            table[key.previous_hashed_key] = replace(
                info, hashed_key=key.previous_hashed_key, secret_expires_at=grace_end
            )
    return table


# Every key by hash (disabled and expired ones too: they get their own 401), and the secrets a rotation
# replaced while their grace period lasts.
active_keys: Snapshot[dict[str, KeyInfo]] = Snapshot("apikeys", _load_keys)


def key_refusal(key: KeyInfo, now: float | None = None) -> tuple[str, str] | None:
    """(code, message) of the 401 for a key that exists but may not be used now, else None."""
    if not key.is_active:
        return "key_disabled", "This API key is disabled."
    now = time.time() if now is None else now
    if key.expires_at is not None and now >= key.expires_at:
        return "key_expired", "This API key has expired."
    if key.secret_expires_at is not None and now >= key.secret_expires_at:
        return "key_expired", "This API key was rotated and its grace period has ended: use the new key."
    return None


def _well_formed(raw: str) -> bool:
    return raw.startswith(KEY_PREFIX) and len(raw) <= 200


def apikey_match(raw: str, keys: dict[str, KeyInfo]) -> KeyInfo | None:
    """The key of ``keys`` (a loaded table) whose hash matches ``raw``, compared in constant time, whatever its
    state (see ``key_refusal``)."""
    if not _well_formed(raw):
        return None
    digest = hash_key(raw)
    info = keys.get(digest)
    if info is None or not hmac.compare_digest(info.hashed_key, digest):
        return None
    return info


def apikey_find(raw: str) -> KeyInfo | None:
    """The key whose hash matches ``raw``, whatever its state, without a query (unless it is new)."""
    if not _well_formed(raw):
        return None
    info = apikey_match(raw, active_keys.get())
    if info is None:
        # Perhaps a key created a moment ago in another process: look at the version now, not in a second.
        info = apikey_match(raw, active_keys.get(recheck=True))
    return info


def apikey_lookup(raw: str) -> KeyInfo | None:
    """The key whose hash matches ``raw`` if it may be used now (enabled, not expired), without a query."""
    info = apikey_find(raw)
    return info if info is not None and key_refusal(info) is None else None


def apikey_may_exist(raw: str) -> bool:
    """False for a value that can never be a key (so there is nothing to look up again)."""
    return _well_formed(raw)
