"""``GET /api/v1/energy/summary``: usage, energy, carbon and cost per model, provider, key, team, end user or
day, optionally of one team's or one key's usage (``?team=``, ``?key=``); ``GET /api/v1/energy/filters``: the
teams and keys those filters may name.

A normal key sees its own usage only; a staff key (or staff session) sees everyone's; a dashboard user's
session sees the usage of the keys they own. ``?format=csv`` answers the same rows as CSV.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiKeyPrincipal
from accounts.models import DISPLAY_PREFIX_LENGTH, ApiKey
from ledger.models import MEASURES
from spignosapi.api.errors import InvalidRequest

from .selectors import GROUP_BYS, energy_summary, prefix_key_ids, summary_filters, summary_totals, team_key_ids

CSV_COLUMNS = ("group", "label", *MEASURES)


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for row in data.get("rows", []) if isinstance(data, Mapping) else []:
            writer.writerow({"label": "", **row})
        return out.getvalue().encode("utf-8")


class FormatNegotiation(BaseContentNegotiation):
    """``?format=json`` (default) or ``?format=csv``; anything else is a 400, not DRF's 404."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        wanted = request.query_params.get("format") or "json"
        for renderer in renderers:
            if renderer.format == wanted:
                return renderer, renderer.media_type
        raise InvalidRequest("format must be json or csv.", code="invalid_format", param="format")


_OFFSET_SPACE = re.compile(r" (\d\d:?\d\d)$")


def parse_when(value: str | None, param: str) -> datetime | None:
    """An ISO 8601 date (midnight UTC) or date-time (UTC when it names no offset)."""
    if value is None or value == "":
        return None
    # An unencoded "+01:00" in a query string arrives as " 01:00".
    text = _OFFSET_SPACE.sub(r"+\1", value.strip())
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{param} must be an ISO 8601 date or date-time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z.",
            code="invalid_date",
            param=param,
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class SummaryFilters(serializers.Serializer[Any]):
    team = serializers.CharField(required=False, max_length=100, help_text="a team's name: its keys' usage")
    key = serializers.CharField(required=False, max_length=DISPLAY_PREFIX_LENGTH, help_text="a key's prefix")


def filtered_key_ids(request: Request) -> list[int] | None:
    """The keys whose usage the summary adds up: those the caller may see (``visible_key_ids``), narrowed by
    ``?team=`` and ``?key=``; None = every key. A filter never widens what a non-staff caller sees."""
    query = SummaryFilters(data=request.query_params)
    query.is_valid(raise_exception=True)
    key_ids = visible_key_ids(request)
    if query.validated_data.get("team"):
        name = query.validated_data["team"]
        team_ids = team_key_ids(name)
        if team_ids is None:
            raise InvalidRequest(f"There is no team {name!r}.", code="team_not_found", param="team")
        key_ids = team_ids if key_ids is None else [i for i in key_ids if i in team_ids]
    if query.validated_data.get("key"):
        prefix = query.validated_data["key"]
        prefix_ids = prefix_key_ids(prefix)
        if not prefix_ids:
            raise InvalidRequest(f"There is no key {prefix!r}.", code="key_not_found", param="key")
        key_ids = prefix_ids if key_ids is None else [i for i in key_ids if i in prefix_ids]
    return key_ids


def visible_key_ids(request: Request) -> list[int] | None:
    """The keys whose usage the caller may see; None = every key (staff)."""
    user = request.user
    if getattr(user, "is_staff", False):
        return None
    if isinstance(user, ApiKeyPrincipal):
        return [user.key_id]
    return list(ApiKey.objects.filter(owner_id=user.pk).values_list("pk", flat=True))


SUMMARY_ROW_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "group": serializers.CharField(
        allow_null=True,
        help_text="model id, provider, key prefix, team name (null: usage of keys without a team), user_id "
        "or YYYY-MM-DD",
    ),
    "label": serializers.CharField(required=False, help_text="group_by=key: the key's name"),
    "requests": serializers.IntegerField(),
    "prompt_tokens": serializers.IntegerField(),
    "completion_tokens": serializers.IntegerField(),
    "energy_wh": serializers.FloatField(help_text="central estimate"),
    "energy_wh_low": serializers.FloatField(),
    "energy_wh_high": serializers.FloatField(),
    "co2e_g": serializers.FloatField(),
    "co2e_g_low": serializers.FloatField(),
    "co2e_g_high": serializers.FloatField(),
    "cost_usd": serializers.FloatField(),
    "estimated_requests": serializers.IntegerField(help_text="requests whose energy was estimated"),
}


class EnergySummaryView(APIView):
    renderer_classes = [JSONRenderer, CSVRenderer]
    content_negotiation_class = FormatNegotiation

    @extend_schema(
        operation_id="energy_summary",
        summary="Usage, energy, CO2e and cost totals by model, provider, key, team, user_id or day",
        description="A non-staff key sees its own usage only, whatever it asks; `group_by=team` counts a "
        "key's usage for the team it is in now, and the usage of keys without a team under `null`.",
        parameters=[
            OpenApiParameter("group_by", OpenApiTypes.STR, enum=list(GROUP_BYS), default="model"),
            SummaryFilters,
            OpenApiParameter("since", OpenApiTypes.STR, description="ISO 8601 date or date-time, inclusive (UTC)"),
            OpenApiParameter("until", OpenApiTypes.STR, description="ISO 8601 date or date-time, exclusive (UTC)"),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], default="json"),
        ],
        responses={
            200: inline_serializer(
                "EnergySummary",
                {
                    "group_by": serializers.CharField(),
                    "since": serializers.DateTimeField(allow_null=True),
                    "until": serializers.DateTimeField(allow_null=True),
                    "grid_g_co2e_per_kwh": serializers.FloatField(help_text="the intensity used for new requests"),
                    "rows": inline_serializer("EnergySummaryRow", SUMMARY_ROW_FIELDS, many=True),
                    "totals": serializers.DictField(),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        group_by = request.query_params.get("group_by") or "model"
        if group_by not in GROUP_BYS:
            raise InvalidRequest(
                f"group_by must be one of {', '.join(GROUP_BYS)}.", code="invalid_group_by", param="group_by"
            )
        since = parse_when(request.query_params.get("since"), "since")
        until = parse_when(request.query_params.get("until"), "until")
        if since is not None and until is not None and since > until:
            raise InvalidRequest("since must not be after until.", code="invalid_range", param="since")
        rows = energy_summary(group_by=group_by, since=since, until=until, key_ids=filtered_key_ids(request))
        payload = {
            "group_by": group_by,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "grid_g_co2e_per_kwh": settings.ENERGY_GRID_G_CO2E_PER_KWH,
            "rows": rows,
            "totals": summary_totals(rows),
        }
        headers = {}
        if request.accepted_renderer.format == "csv":
            headers["Content-Disposition"] = f'attachment; filename="energy-summary-{group_by}.csv"'
        return Response(payload, headers=headers)

    def handle_exception(self, exc: Exception) -> Response:
        # Errors are the JSON envelope even when CSV was asked for.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


FILTER_KEY_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "prefix": serializers.CharField(),
    "name": serializers.CharField(),
    "team": serializers.CharField(allow_null=True),
}


class EnergyFiltersView(APIView):
    @extend_schema(
        operation_id="energy_filters",
        summary="The teams and keys the energy summary may be filtered by (those the caller may see)",
        responses={
            200: inline_serializer(
                "EnergyFilters",
                {
                    "teams": serializers.ListField(child=serializers.CharField()),
                    "keys": inline_serializer("EnergyFilterKey", FILTER_KEY_FIELDS, many=True),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        return Response(summary_filters(visible_key_ids(request)))
