"""The status API (public), the monitoring JSON the dashboard reads, the probe log and the refresh."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsStaff
from spignosapi.api.errors import NotFound

from . import selectors, services
from .models import Incident, Probe
from .serializers import (
    HistoryQuery,
    IncidentOutput,
    IncidentsQuery,
    PlatformStatusQuery,
    ProbeOutput,
    RefreshAccepted,
    RefreshInput,
    ResultsQuery,
)


def _query(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    data = serializer_class(data=request.query_params)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


class PlatformStatusView(APIView):
    """Public: no key needed, and a key sent anyway is ignored."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Platform status (public), or one model's with ?model=",
        parameters=[
            OpenApiParameter("model", str, description="A model id: that model's last probe instead."),
            OpenApiParameter(
                "window",
                str,
                enum=["1h", "24h", "7d"],
                default="24h",
                description="With ?model=: the window of its percentiles (probes and real traffic together).",
            ),
        ],
        responses={200: dict},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        query = _query(PlatformStatusQuery, request)
        if "model" not in query:
            return Response(selectors.platform_status())
        rows = selectors.monitored_rows([query["model"]])
        if not rows:
            raise NotFound(f"No monitored model {query['model']!r}.", code="model_not_found", param="model")
        return Response(selectors.model_status(rows[0], window=query["window"]))


class IncidentsView(ListAPIView[Incident]):
    """Public like the platform status, a key ignored: the incidents of ``/status/`` (public models and the
    whole platform), read-only."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    serializer_class = IncidentOutput

    @extend_schema(
        summary="Incidents of the public status page, newest first: automatic and manual, with their timelines",
        parameters=[IncidentsQuery],
        auth=[],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        query = _query(IncidentsQuery, self.request)
        model = None
        if query.get("model"):
            model = selectors.find_model(query["model"])
            # A model off the status page is answered as if it did not exist: the public learns nothing of it.
            if model is None or not (model.public and model.monitor):
                raise NotFound(
                    f"No model {query['model']!r} on the status page.", code="model_not_found", param="model"
                )
        return selectors.public_incidents(model=model, state=query.get("state") or None)


class StatsView(APIView):
    @extend_schema(summary="Every monitored model: last probe, availability, percentiles", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(selectors.stats_payload())


class HistoryView(APIView):
    @extend_schema(
        summary="One model's probes over the last hours, oldest first",
        parameters=[HistoryQuery],
        responses={200: dict},
    )
    def get(self, request: Request) -> Response:
        query = _query(HistoryQuery, request)
        model = selectors.find_model(query["model"])
        if model is None:
            raise NotFound(f"No model {query['model']!r}.", code="model_not_found", param="model")
        return Response(selectors.history(model, hours=query["hours"]))


class ResultsView(ListAPIView[Probe]):
    serializer_class = ProbeOutput

    @extend_schema(summary="The probe log (filtered, paginated, newest first)", parameters=[ResultsQuery])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        query = _query(ResultsQuery, self.request)
        return selectors.probes_filtered(
            model_id=query.get("model") or None,
            provider=query.get("provider") or None,
            since=query.get("since"),
            bucket=query.get("bucket") or None,
            kind=query.get("kind") or None,
        )


class RefreshView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Probe models now on the worker (staff); poll /stats for the results",
        request=RefreshInput,
        responses={202: RefreshAccepted},
    )
    def post(self, request: Request) -> Response:
        data = RefreshInput(data=request.data if request.data is not None else {})
        data.is_valid(raise_exception=True)
        task_id, models = services.refresh_queue(model_ids=data.validated_data.get("models"))
        return Response({"status": "queued", "task_id": task_id, "models": models}, status=202)
