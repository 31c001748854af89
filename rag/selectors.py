"""Who may read and write which RAG collection, and what a collection name means for a caller.

The rule (issue 19), in one place:

- A collection has one owner: a team (the key that created it had one), a key (it had none), or staff
  (neither: collections older than owners, and those a staff key without a team creates).
- Its writers - ingest, replace, delete, sharing - are the owner (the owning key, or every key of the owning
  team) and staff.
- Its readers - query, stream, detail, list - are its writers, the keys of the teams it is shared with, and
  every key when it is public-read.
- A name resolves in the caller's own scope first (what its key or its team owns; for a staff key also what
  staff owns), then among the other collections the caller may use that way. When one step finds several,
  the answer is 409 ``ambiguous_collection`` naming their owners, and ``?owner=`` picks one (``team:<name>``,
  ``key:<prefix>`` or ``staff``). A collection the caller may not use answers exactly like a missing one
  (404): its name does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.db.models import Count, Q, QuerySet

from accounts.models import ApiKey, Team
from accounts.selectors import KeyInfo
from spignosapi.errors import Reason, ServiceError

from .models import Collection

Access = Literal["read", "write"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: an API key (with its team), or a staff user of an admin session (no key)."""

    key_id: int | None
    team_id: int | None
    is_staff: bool

    @classmethod
    def of(cls, key: KeyInfo) -> Caller:
        return cls(key_id=key.id, team_id=key.team_id, is_staff=key.is_staff)


STAFF_OWNED = Q(owner_team__isnull=True, owner_key__isnull=True)


def _own(caller: Caller) -> Q:
    own = Q(owner_key_id=caller.key_id) if caller.key_id is not None else Q(pk__in=[])
    if caller.team_id is not None:
        own |= Q(owner_team_id=caller.team_id)
    if caller.is_staff:
        own |= STAFF_OWNED
    return own


def _is_own(caller: Caller, collection: Collection) -> bool:
    if collection.owner_team_id is not None:
        return collection.owner_team_id == caller.team_id
    if collection.owner_key_id is not None:
        return collection.owner_key_id == caller.key_id
    return caller.is_staff


def may_write(caller: Caller, collection: Collection) -> bool:
    return caller.is_staff or _is_own(caller, collection)


def _allowed(caller: Caller, access: Access) -> Q:
    if caller.is_staff:
        return Q()
    if access == "write":
        return _own(caller)
    readable = _own(caller) | Q(public_read=True)
    if caller.team_id is not None:
        # A subquery, not a join: a join on the sharing table would repeat rows.
        shared = Collection.shared_with_teams.through.objects.filter(team_id=caller.team_id)
        readable |= Q(pk__in=shared.values("collection_id"))
    return readable


def owner_filter(owner: str) -> Q:
    """The collections ``?owner=`` names; 400 for a value that is no owner label."""
    kind, _, value = owner.partition(":")
    if owner == "staff":
        return STAFF_OWNED
    if kind == "team" and value:
        return Q(owner_team__name=value)
    if kind == "key" and value:
        return Q(owner_key__prefix=value)
    raise ServiceError(
        "owner must be team:<name>, key:<prefix> or staff.", reason=Reason.INVALID, code="invalid_owner", param="owner"
    )


def collections_visible(caller: Caller, *, owner: str | None = None) -> QuerySet[Collection]:
    """Every collection the caller may read (``owner``: only that owner's), with what its payload shows."""
    found = Collection.objects.filter(_allowed(caller, "read"))
    if owner is not None:
        found = found.filter(owner_filter(owner))
    return with_counts(found).order_by("name", "pk")  # (Meta.ordering is not applied to aggregating queries)


def with_counts(collections: QuerySet[Collection]) -> QuerySet[Collection]:
    return (
        collections.select_related("owner_team", "owner_key")
        .prefetch_related("shared_with_teams")
        .annotate(
            n_documents=Count("documents", distinct=True),
            n_chunks=Count("documents__chunks"),
            n_embedded=Count("documents__chunks", filter=Q(documents__chunks__embedding__isnull=False)),
        )
    )


def collection_find(
    caller: Caller, name: str, *, access: Access, owner: str | None = None, param: str | None = None
) -> Collection:
    """The collection ``name`` means for the caller, for reading or writing (module docstring).

    404 ``collection_not_found`` (with ``param``) when there is none it may use that way - whether or not
    another owner has one; 409 ``ambiguous_collection`` when the name needs ``?owner=``.
    """
    candidates = Collection.objects.filter(_allowed(caller, access), name=name)
    if owner is not None:
        candidates = candidates.filter(owner_filter(owner))
    found = list(candidates.select_related("owner_team", "owner_key")[:20])
    own = [c for c in found if _is_own(caller, c)]
    for step in (own, found):
        if len(step) == 1:
            return step[0]
        if len(step) > 1:
            owners = ", ".join(sorted(c.owner_label for c in step))
            raise ServiceError(
                f"Several collections named {name!r} are yours to use ({owners}): choose one with ?owner=.",
                reason=Reason.CONFLICT,
                code="ambiguous_collection",
                param="owner",
            )
    raise ServiceError(
        f"The collection {name!r} does not exist.", reason=Reason.NOT_FOUND, code="collection_not_found", param=param
    )


def owner_for_new(caller: Caller, owner: str | None) -> tuple[Team | None, ApiKey | None]:
    """(team, key) that own a collection the caller creates: its team's; else, for a key that is not staff,
    its key's; else staff's (both None). Or ``owner``, which must be the caller's own or - for staff - any
    existing owner: 404 for one the caller may not write for, as for a collection it may not see."""
    if owner is None:
        if caller.team_id is not None:
            return Team.objects.get(pk=caller.team_id), None
        if caller.key_id is not None and not caller.is_staff:
            return None, ApiKey.objects.get(pk=caller.key_id)
        return None, None
    owner_filter(owner)  # 400 for a malformed label
    kind, _, value = owner.partition(":")
    team = Team.objects.filter(name=value).first() if kind == "team" else None
    key = ApiKey.objects.filter(prefix=value).first() if kind == "key" else None
    if caller.is_staff and (owner == "staff" or team is not None or key is not None):
        return team, key
    if (team is not None and team.pk == caller.team_id) or (key is not None and key.pk == caller.key_id):
        return team, key
    raise ServiceError(
        f"There is no owner {owner!r} you may write for.",
        reason=Reason.NOT_FOUND,
        code="owner_not_found",
        param="owner",
    )
