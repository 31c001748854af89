"""The keys and teams API (contract section 3, "Keys, teams, budgets, audit").

``GET /api/v1/keys/me`` for any key (read from the in-memory key table); the rest for staff. A key's raw
secret appears only in the answer to its creation and to its rotation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from routing.budgeting import budgets_in_force

from . import services
from .models import ApiKey, Team
from .permissions import IsStaff
from .selectors import KeyInfo
from .serializers import (
    CreatedKeySerializer,
    KeyMeOutput,
    KeySerializer,
    RotateInput,
    TeamSerializer,
    effective_limits,
)


def key_me_payload(key: KeyInfo) -> dict[str, Any]:
    expires_at = datetime.fromtimestamp(key.expires_at, UTC) if key.expires_at is not None else None
    return {
        "name": key.name,
        "prefix": key.prefix,
        "team": key.team_name,
        "is_staff": key.is_staff,
        "limits": effective_limits(key),
        "allowed_models": list(key.allowed_models),
        "team_allowed_models": list(key.team_allowed_models),
        "expires_at": expires_at,
        "tags": list(key.tags),
        "budgets": budgets_in_force(key),
    }


class KeyMeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="The calling key: its team, limits, allowed models, expiry, tags and budgets",
        responses={200: KeyMeOutput},
    )
    def get(self, request: Request) -> Response:
        key = request.auth
        if not isinstance(key, KeyInfo):  # a signed-in user (a session) has no key to describe
            raise PermissionDenied("This endpoint describes the API key that calls it: send one.")
        return Response(KeyMeOutput(key_me_payload(key)).data)


def _with_secret(key: ApiKey, raw: str) -> dict[str, Any]:
    """A key as ``CreatedKeySerializer`` documents it: with its raw secret, in this answer only."""
    return {**KeySerializer(key).data, "key": raw}


def _keys() -> QuerySet[ApiKey]:
    return ApiKey.objects.select_related("team")


class KeysView(generics.ListCreateAPIView[ApiKey]):
    permission_classes = [IsStaff]
    serializer_class = KeySerializer

    def get_queryset(self) -> QuerySet[ApiKey]:
        return _keys().order_by("-created_at", "-id")

    @extend_schema(summary="API keys (never their secrets)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create an API key: the answer holds the raw key, shown this once",
        request=KeySerializer,
        responses={201: CreatedKeySerializer},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = KeySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        key, raw = services.apikey_create(name=values.pop("name"), **values)
        return Response(_with_secret(key, raw), status=201)


class KeyDetailView(generics.RetrieveUpdateDestroyAPIView[ApiKey]):
    permission_classes = [IsStaff]
    serializer_class = KeySerializer
    lookup_field = "prefix"
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[ApiKey]:
        return _keys()

    def perform_update(self, serializer: BaseSerializer[ApiKey]) -> None:
        assert serializer.instance is not None
        services.apikey_update(key=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: ApiKey) -> None:
        services.apikey_delete(key=instance)


class KeyRotateView(generics.GenericAPIView[ApiKey]):
    permission_classes = [IsStaff]
    serializer_class = KeySerializer
    lookup_field = "prefix"

    def get_queryset(self) -> QuerySet[ApiKey]:
        return _keys()

    @extend_schema(
        summary="Give the key a new secret (shown this once); the old one works until its grace period ends",
        request=RotateInput,
        responses={200: CreatedKeySerializer},
    )
    def post(self, request: Request, prefix: str) -> Response:
        key = self.get_object()
        data = RotateInput(data=request.data)
        data.is_valid(raise_exception=True)
        key, raw = services.apikey_rotate(key=key, grace_seconds=data.validated_data.get("grace_period_seconds"))
        return Response(_with_secret(key, raw))


class TeamsView(generics.ListCreateAPIView[Team]):
    permission_classes = [IsStaff]
    serializer_class = TeamSerializer
    queryset = Team.objects.order_by("name")

    def perform_create(self, serializer: BaseSerializer[Team]) -> None:
        serializer.instance = services.team_create(**serializer.validated_data)


class TeamDetailView(generics.RetrieveUpdateDestroyAPIView[Team]):
    permission_classes = [IsStaff]
    serializer_class = TeamSerializer
    lookup_field = "name"
    http_method_names = ["get", "patch", "delete", "head", "options"]
    queryset = Team.objects.all()

    @extend_schema(summary="Delete a team (409 while keys belong to it)")
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().delete(request, *args, **kwargs)

    def perform_update(self, serializer: BaseSerializer[Team]) -> None:
        assert serializer.instance is not None
        services.team_update(team=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: Team) -> None:
        services.team_delete(team=instance)
