"""Health endpoints, the platform readiness summary and the favicon."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.templatetags.static import static
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from routing.readiness import readiness

from .health import run_checks


async def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests."""
    return JsonResponse({"status": "ok"})


async def health_full(request: HttpRequest) -> JsonResponse:
    """Readiness of every dependency; 503 when any is down, naming it."""
    checks = await run_checks()
    down = sorted(name for name, result in checks.items() if result["status"] != "ok")
    body = {"status": "ok" if not down else "error", "checks": checks, "down": down}
    return JsonResponse(body, status=200 if not down else 503)


class StatusView(APIView):
    """Is the platform ready to generate: every routable model with its breaker (filled by routing)."""

    @extend_schema(summary="Platform readiness for generation", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(readiness())


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """``/favicon.ico``, which browsers ask for on pages that name no icon (the admin, Swagger UI): the site's."""
    return HttpResponseRedirect(static("spignosapi/favicon.svg"))
