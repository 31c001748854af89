"""The platform's URLs plus views that raise each kind of error, to test the envelope end to end."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsStaff
from spignosapi.api.errors import Conflict, RateLimited
from spignosapi.urls import urlpatterns as platform_urlpatterns


class EchoInput(serializers.Serializer[Any]):
    prompt = serializers.CharField()
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)


class EchoView(APIView):
    def post(self, request: Request) -> Response:
        data = EchoInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(data.validated_data)


class StaffOnlyView(APIView):
    permission_classes = [IsStaff]

    def get(self, request: Request) -> Response:
        return Response({"staff": True})


class BrokenView(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("boom with secret sk-should-not-leak")


class ConflictView(APIView):
    def get(self, request: Request) -> Response:
        raise Conflict("Already exists.", param="name")


class LimitedView(APIView):
    def get(self, request: Request) -> Response:
        raise RateLimited("Slow down.", retry_after=7)


def plain_broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("plain view failure")


urlpatterns = [
    path("api/v1/test/echo", EchoView.as_view()),
    path("api/v1/test/staff", StaffOnlyView.as_view()),
    path("api/v1/test/broken", BrokenView.as_view()),
    path("api/v1/test/conflict", ConflictView.as_view()),
    path("api/v1/test/limited", LimitedView.as_view()),
    path("api/v1/test/plain-broken", plain_broken),
    *platform_urlpatterns,
]

handler400 = "spignosapi.api.errors.json_400"
handler404 = "spignosapi.api.errors.json_404"
handler500 = "spignosapi.api.errors.json_500"
