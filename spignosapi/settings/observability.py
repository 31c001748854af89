"""Traces (OpenTelemetry over OTLP/HTTP) and Prometheus' multiprocess mode, from their standard variables.

Tracing is on when an OTLP endpoint is named: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the full URL), else
``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces`` (the exporter's own rule). Without one — or with
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` — no OpenTelemetry module is imported and
nothing is wrapped. The SDK reads the other ``OTEL_*`` variables itself (``OTEL_SERVICE_NAME``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_SCHEDULE_DELAY``, …).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from .base import MIDDLEWARE as _BASE_MIDDLEWARE
from .env import env_bool, env_str


def traces_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The OTLP/HTTP URL traces go to, or "" when tracing is off."""
    disabled = env_bool("OTEL_SDK_DISABLED", False, environ=environ)
    if disabled or env_str("OTEL_TRACES_EXPORTER", environ=environ).strip().lower() == "none":
        return ""
    # An empty value (as .env.example leaves them) means "not set", as it does for every other variable.
    name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    endpoint = env_str(name, environ=environ).strip()
    if not endpoint:
        name = "OTEL_EXPORTER_OTLP_ENDPOINT"
        base = env_str(name, environ=environ).strip()
        endpoint = base.rstrip("/") + "/v1/traces" if base else ""
    parts = urlsplit(endpoint)
    if endpoint and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ImproperlyConfigured(f"{name} must be the http(s) URL of an OTLP/HTTP receiver, got {endpoint!r}")
    return endpoint


TRACING_ENDPOINT = traces_endpoint()
TRACING_ENABLED = bool(TRACING_ENDPOINT)
if TRACING_ENABLED:
    # Names the server span after the matched route (only when tracing: nothing is added otherwise).
    MIDDLEWARE = [*_BASE_MIDDLEWARE, "spignosapi.tracing.RouteMiddleware"]


def multiprocess_dir(environ: Mapping[str, str] | None = None) -> str:
    """Prometheus' multiprocess directory, or "" (one process's metrics).

    prometheus_client reads the variable itself when it is imported; the directory must exist (and be
    emptied by whatever starts the web processes: see the Dockerfile), or every metric update would fail.
    """
    path = env_str("PROMETHEUS_MULTIPROC_DIR", environ=environ)
    if path and not Path(path).is_dir():
        raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR={path!r} is not a directory")
    return path


PROMETHEUS_MULTIPROC_DIR = multiprocess_dir()
