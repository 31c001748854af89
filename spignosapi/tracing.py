"""OpenTelemetry traces, set up once per process when an OTLP endpoint is configured.

``settings.TRACING_ENABLED`` (spignosapi/settings/observability.py) decides. Each process calls
``setup(role)``: the web app from ``spignosapi/asgi.py``, Celery's pool processes from ``worker_process_init``
(after the fork: the batch exporter's thread would not survive it), beat from ``beat_init``. Without an
endpoint ``setup`` returns at once: nothing of the tracing SDK is imported, nothing is wrapped, and
``tracer`` stays None — the gateway's spans (routing/spans.py) cost one check of it. (redis-py imports the
SDK's metrics package on its own when it is installed, to see whether it could use it; it sets nothing up.)

With one, a process gets:
* a tracer provider exporting in batches over OTLP/HTTP (protobuf); the ``OTEL_*`` variables tune it;
* one server span per HTTP request (the ASGI middleware; ``RouteMiddleware`` names it after the route);
* Celery's instrumentation: a task carries the sender's trace context in its message headers, and the
  worker's ``run/<task>`` span continues that trace;
* ``trace_id`` and ``span_id`` on every log record written inside a span.

Span attributes never hold prompts, outputs or credentials: ids, names, counts and error codes only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

tracer: Tracer | None = None
_provider: TracerProvider | None = None


def setup(role: str) -> bool:
    """Start tracing in this process when it is configured (idempotent); True when it is on.

    ``role`` (web, worker, beat) names the service unless ``OTEL_SERVICE_NAME`` (or ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``) does.
    """
    global tracer, _provider
    from django.conf import settings

    if tracer is not None or not settings.TRACING_ENABLED:
        return tracer is not None
    # The stable HTTP attribute names (http.request.method, http.response.status_code, url.path), unless
    # the operator chose otherwise; the instrumentation reads this once, when its first middleware is built.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from . import logs

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"spignosapi-{role}"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.TRACING_ENDPOINT)))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    tracer = provider.get_tracer("spignosapi")

    def current_ids() -> tuple[str, str] | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)

    logs.current_trace_ids = current_ids
    return True


def flush() -> None:
    """Export what is buffered (a pool process about to exit may not run the exit hooks); bounded, so an
    unreachable collector does not hold up a worker's shutdown."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)


def server_spans(app: Any) -> Any:
    """``app`` (ASGI, HTTP) with one server span per request: the client's ``traceparent`` is continued."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    # No spans of their own for each ASGI receive/send message: one span per request.
    return OpenTelemetryMiddleware(app, tracer_provider=_provider, exclude_spans=["receive", "send"])


class RouteMiddleware:
    """Names the request's server span ``METHOD /route/<pattern>`` and adds ``http.route`` and the request
    id. In ``MIDDLEWARE`` only when tracing is on; async-capable, so it never costs a thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        from opentelemetry import trace

        self.get_response = get_response
        self._current_span = trace.get_current_span
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        response = self.get_response(request)
        self._name(request)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await self.get_response(request)
        self._name(request)
        return response

    def _name(self, request: HttpRequest) -> None:
        span = self._current_span()
        if not span.is_recording():
            return
        match = request.resolver_match
        if match is not None and match.route:
            route = "/" + match.route
            span.update_name(f"{request.method} {route}")
            span.set_attribute("http.route", route)
        else:  # unmatched (404): the method alone, as the conventions ask, not the raw path
            span.update_name(str(request.method))
        request_id = getattr(request, "request_id", None)
        if request_id:
            span.set_attribute("spignos.request_id", request_id)
