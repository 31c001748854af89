"""Reads for API keys: every active key, held in memory per process (see ``spignosapi.snapshots``)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from spignosapi.snapshots import Snapshot

from .models import KEY_PREFIX, ApiKey, hash_key


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    name: str
    is_staff: bool
    rpm_limit: int | None
    tpm_limit: int | None
    max_tokens_cap: int | None
    max_prompt_tokens: int | None
    owner_id: int | None
    hashed_key: str
    team_id: int | None = None  # last, with a default: code that builds a KeyInfo by position predates teams


def _load_active_keys() -> dict[str, KeyInfo]:
    rows = ApiKey.objects.filter(is_active=True).values_list(
        "id",
        "name",
        "is_staff",
        "rpm_limit",
        "tpm_limit",
        "max_tokens_cap",
        "max_prompt_tokens",
        "owner_id",
        "hashed_key",
        "team_id",
    )
    return {row[8]: KeyInfo(*row) for row in rows}


active_keys: Snapshot[dict[str, KeyInfo]] = Snapshot("apikeys", _load_active_keys)


def _well_formed(raw: str) -> bool:
    return raw.startswith(KEY_PREFIX) and len(raw) <= 200


def apikey_match(raw: str, keys: dict[str, KeyInfo]) -> KeyInfo | None:
    """The key of ``keys`` (a loaded table) whose hash matches ``raw``, compared in constant time."""
    if not _well_formed(raw):
        return None
    digest = hash_key(raw)
    info = keys.get(digest)
    if info is None or not hmac.compare_digest(info.hashed_key, digest):
        return None
    return info


def apikey_lookup(raw: str) -> KeyInfo | None:
    """The active key whose hash matches ``raw`` (hash compared in constant time), without a query."""
    if not _well_formed(raw):
        return None
    info = apikey_match(raw, active_keys.get())
    if info is None:
        # Perhaps a key created a moment ago in another process: look at the version now, not in a second.
        info = apikey_match(raw, active_keys.get(recheck=True))
    return info


def apikey_may_exist(raw: str) -> bool:
    """False for a value that can never be a key (so there is nothing to look up again)."""
    return _well_formed(raw)
