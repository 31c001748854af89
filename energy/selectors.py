"""Reads: which coefficient applies to a model, and the usage summary by model, provider, key, team, user or day.

The gateway never queries coefficients per request: ``energy_profiles()`` is called when the routing
snapshot loads (``routing.selectors``), and each model's profile travels in its ``ModelInfo``.

The summary reads the daily roll-ups (``UsageDaily``, ``UsageDailyByUser``) for the whole UTC days in the
range, and the usage records themselves only for the part-days at its edges, so it costs the same on a
million rows as on a thousand and is still exact for any ``since``/``until``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, IntegerField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from ledger.accounting import model_setting_coefficient
from ledger.coefficients import ENERGY_DECIMALS, Coefficient, EnergyProfile, Range, facility_scale
from ledger.estimation import estimate
from ledger.models import MEASURES, UsageDaily, UsageDailyByUser, UsageRecord

from .models import EnergyCoefficient

GROUP_BYS = ("model", "provider", "key", "team", "user_id", "day")


# --- coefficients --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelRef:
    """What the profile of one model depends on."""

    model_id: str
    kind: str
    name: str
    energy_kwh_per_m: float | None


def coefficient_of(row: EnergyCoefficient) -> Coefficient:
    scale = facility_scale(row.scope, row.pue)
    output = Range(row.output_kwh_per_m_low, row.output_kwh_per_m, row.output_kwh_per_m_high).scaled(scale)
    input_ = None
    if row.input_kwh_per_m is not None:
        input_ = Range(
            row.input_kwh_per_m_low if row.input_kwh_per_m_low is not None else row.input_kwh_per_m,
            row.input_kwh_per_m,
            row.input_kwh_per_m_high if row.input_kwh_per_m_high is not None else row.input_kwh_per_m,
        ).scaled(scale)
    return Coefficient(
        output=output,
        input=input_,
        token_basis=row.token_basis,
        estimated=row.estimated,
        source=row.source,
        id=row.pk,
        valid_from=row.valid_from,
    )


def _names(name: str) -> list[str]:
    """The names a bare-name coefficient may be written under, most specific first."""
    lowered = name.lower().removesuffix(":latest")
    last = lowered.rsplit("/", 1)[-1]
    return [lowered] if last == lowered else [lowered, last]


def energy_profiles(models: Iterable[ModelRef]) -> dict[str, EnergyProfile]:
    """Each model's coefficients by precedence, read in one query.

    1. coefficients written for its exact id ``<provider>/<name>``;
    2. its own ``energy_kwh_per_m``;
    3. coefficients written for its bare name (``gpt-4o-mini`` matches ``openrouter/openai/gpt-4o-mini``);
    4. an estimate from its parameter count (``ledger.estimation``), flagged estimated: only made here when
       there is nothing else; ``ledger.accounting`` makes it if the others are all valid from a later time.
    """
    by_key: dict[str, list[Coefficient]] = {}
    for row in EnergyCoefficient.objects.order_by("valid_from", "id"):
        by_key.setdefault(row.model.lower(), []).append(coefficient_of(row))
    profiles: dict[str, EnergyProfile] = {}
    for ref in models:
        tiers: list[tuple[Coefficient, ...]] = [tuple(by_key.get(ref.model_id.lower(), ()))]
        if ref.energy_kwh_per_m is not None:
            tiers.append((model_setting_coefficient(ref.energy_kwh_per_m),))
        tiers.extend(tuple(by_key.get(name, ())) for name in _names(ref.name))
        if not any(tiers):
            tiers.append((estimate(ref.kind, ref.name),))
        profiles[ref.model_id] = EnergyProfile(tuple(tier for tier in tiers if tier))
    return profiles


# --- summary -------------------------------------------------------------------------------------------------


@dataclass
class SummaryRow:
    group: str | None  # None: the team of keys that have none (group_by=team)
    label: str = ""
    totals: dict[str, Any] = field(default_factory=dict)

    def add(self, values: dict[str, Any]) -> None:
        for name in MEASURES:
            value = values.get(name) or 0
            self.totals[name] = self.totals.get(name, 0) + (Decimal(str(value)) if name == "cost_usd" else value)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"group": self.group}
        if self.label:
            out["label"] = self.label
        for name in MEASURES:
            value = self.totals.get(name, 0)
            if name == "cost_usd":
                out[name] = float(round(Decimal(value), 8))
            elif isinstance(value, float):
                out[name] = round(value, ENERGY_DECIMALS)
            else:
                out[name] = int(value)
        return out


@dataclass(frozen=True)
class Span:
    """A [since, until) range cut into whole UTC days (read from the roll-ups) and part-days at the edges."""

    first_day: date | None
    last_day: date | None
    edges: tuple[tuple[datetime | None, datetime | None], ...]
    empty_days: bool = False


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def span(since: datetime | None, until: datetime | None) -> Span:
    """[since, until) as the whole UTC days inside it and the part-days left at its edges."""
    first = last = None
    edges: list[tuple[datetime | None, datetime | None]] = []
    if since is not None:
        since_day = since.astimezone(UTC).date()
        first = since_day if since == _midnight(since_day) else since_day + timedelta(days=1)
    if until is not None:
        until_day = until.astimezone(UTC).date()
        last = until_day - timedelta(days=1)
    if first is not None and last is not None and first > last:
        # No whole day inside: the range is one part-day (or two that touch midnight), read from the records.
        return Span(None, None, ((since, until),) if since is not None and until is not None else (), True)
    if since is not None and first is not None and _midnight(first) > since:
        edges.append((since, _midnight(first)))
    if until is not None and until > _midnight(until.astimezone(UTC).date()):
        edges.append((_midnight(until.astimezone(UTC).date()), until))
    return Span(first, last, tuple(edges))


def _sums() -> dict[str, Any]:
    return {name: Sum(name) for name in MEASURES}


def _from_rollups(group_by: str, spn: Span, key_ids: Collection[int] | None) -> list[dict[str, Any]]:
    if spn.empty_days:
        return []
    table: type[UsageDaily] | type[UsageDailyByUser] = UsageDailyByUser if group_by == "user_id" else UsageDaily
    rows: QuerySet[Any] = table.objects.all()
    if spn.first_day is not None:
        rows = rows.filter(day__gte=spn.first_day)
    if spn.last_day is not None:
        rows = rows.filter(day__lte=spn.last_day)
    if key_ids is not None:
        rows = rows.filter(api_key_id__in=list(key_ids))
    column = {"key": "api_key_id"}.get(group_by, group_by)
    out = []
    for row in rows.order_by().values(column).annotate(**_sums()):
        row["group"] = row.pop(column)
        out.append(row)
    return out


def _from_records(group_by: str, spn: Span, key_ids: Collection[int] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start, end in spn.edges:
        rows: QuerySet[Any] = UsageRecord.objects.all()
        if start is not None:
            rows = rows.filter(created_at__gte=start)
        if end is not None:
            rows = rows.filter(created_at__lt=end)
        if key_ids is not None:
            rows = rows.filter(api_key_id__in=list(key_ids))
        group: Any = {
            "day": TruncDate("created_at", tzinfo=UTC),
            "key": Coalesce("api_key_id", Value(0), output_field=IntegerField()),
        }.get(group_by)
        rows = rows.annotate(group=group if group is not None else F(group_by))
        sums: dict[str, Any] = {name: Sum(name) for name in MEASURES if name not in ("requests", "estimated_requests")}
        sums["requests"] = Count("id")
        sums["estimated_requests"] = Count("id", filter=Q(energy_estimated=True))
        out.extend(rows.order_by().values("group").annotate(**sums))
    return out


def _teams_of(key_ids: Iterable[int | None]) -> dict[int | None, str | None]:
    """Each key's team's name (None: no team, no key, or a deleted key): a key's usage counts for the team it
    is in now."""
    from accounts.models import ApiKey

    teams: dict[int | None, str | None] = {key_id: None for key_id in key_ids}
    ids = [key_id for key_id in teams if key_id]
    teams.update(ApiKey.objects.filter(pk__in=ids, team__isnull=False).values_list("pk", "team__name"))
    return teams


def _labels(group_by: str, groups: Iterable[Any]) -> dict[Any, tuple[str | None, str]]:
    """(group, label) for each raw group value: keys are shown by prefix and name, days as ISO dates."""
    if group_by == "team":
        return {g: (g, "") for g in groups}
    if group_by == "key":
        from accounts.models import ApiKey

        ids = [g for g in groups if g]
        keys = {k.pk: k for k in ApiKey.objects.filter(pk__in=ids).only("pk", "name", "prefix")}
        labels: dict[Any, tuple[str | None, str]] = {}
        for g in groups:
            key = keys.get(g)
            if not g:
                labels[g] = ("", "(no key)")
            elif key is None:
                labels[g] = (f"#{g}", "(deleted key)")
            else:
                labels[g] = (key.prefix, key.name)
        return labels
    if group_by == "day":
        return {g: (g.isoformat() if isinstance(g, date) else str(g), "") for g in groups}
    return {g: (str(g), "") for g in groups}


def energy_summary(
    *,
    group_by: str,
    since: datetime | None = None,
    until: datetime | None = None,
    key_ids: Collection[int] | None = None,
) -> list[dict[str, Any]]:
    """Usage totals per group over [since, until); ``key_ids`` limits it to those keys (None = every key).

    ``team`` sums the keys of each team (read by key, then added up): usage without a team (its key has
    none, or it had no key) is the group None. Rows are ordered by day for ``day``, else by energy (highest
    first) then group.
    """
    if group_by not in GROUP_BYS:
        raise ValueError(f"group_by must be one of {GROUP_BYS}")
    spn = span(since, until)
    read_by = "key" if group_by == "team" else group_by
    parts = [*_from_rollups(read_by, spn, key_ids), *_from_records(read_by, spn, key_ids)]
    teams = _teams_of(values["group"] for values in parts) if group_by == "team" else {}
    merged: dict[Any, SummaryRow] = {}
    for values in parts:
        group = values["group"]
        if group_by == "day" and isinstance(group, datetime):
            group = group.date()
        elif group_by == "team":
            group = teams[group]
        merged.setdefault(group, SummaryRow(group="")).add(values)
    labels = _labels(group_by, merged)
    rows: list[dict[str, Any]] = []
    for group, row in merged.items():
        row.group, row.label = labels[group]
        rows.append(row.as_dict())
    if group_by == "day":
        rows.sort(key=lambda r: r["group"])
    else:
        rows.sort(key=lambda r: (-r["energy_wh"], r["group"] or ""))
    return rows


def summary_totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total = SummaryRow(group="")
    for row in rows:
        total.add(row)
    out = total.as_dict()
    del out["group"]
    return out


# --- the summary's filters ----------------------------------------------------------------------------------


def team_key_ids(name: str) -> list[int] | None:
    """The ids of the keys in the team ``name`` (None: there is no such team)."""
    from accounts.models import ApiKey, Team

    if not Team.objects.filter(name=name).exists():
        return None
    return list(ApiKey.objects.filter(team__name=name).values_list("pk", flat=True))


def prefix_key_ids(prefix: str) -> list[int]:
    """The ids of the keys shown by ``prefix`` (one, but for the rare prefix two keys share)."""
    from accounts.models import ApiKey

    return list(ApiKey.objects.filter(prefix=prefix).values_list("pk", flat=True))


def summary_filters(key_ids: Collection[int] | None) -> dict[str, Any]:
    """The teams and keys the summary may be filtered by, among ``key_ids`` (None = every key and team)."""
    from accounts.models import ApiKey, Team

    keys = ApiKey.objects.select_related("team").order_by("name", "prefix")
    if key_ids is not None:
        keys = keys.filter(pk__in=list(key_ids))
    rows = [{"prefix": k.prefix, "name": k.name, "team": k.team.name if k.team else None} for k in keys]
    if key_ids is None:
        teams = list(Team.objects.order_by("name").values_list("name", flat=True))
    else:
        teams = sorted({row["team"] for row in rows if row["team"]})
    return {"teams": teams, "keys": rows}
