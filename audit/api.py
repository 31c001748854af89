"""``GET /api/v1/audit`` (staff): who changed what, when, with its before and after."""

from __future__ import annotations

from typing import Any

from auditlog.models import LogEntry
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsStaff

from .selectors import audit_entries
from .serializers import AuditEntryOutput, AuditQuery


class AuditView(ListAPIView[LogEntry]):
    permission_classes = [IsStaff]
    serializer_class = AuditEntryOutput

    @extend_schema(
        summary="The audit log (staff): changes to keys, teams, routing, energy; newest first", parameters=[AuditQuery]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[LogEntry]:
        query = AuditQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        return audit_entries(
            object_type=params.get("model"),
            object_id=params.get("object"),
            actor=params.get("actor"),
            since=params.get("since"),
            until=params.get("until"),
        )
