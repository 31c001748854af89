"""ASGI entry point: HTTP through Django, WebSocket through Channels (session and API-key auth)."""

from __future__ import annotations

import os

from spignosapi.fastpath.handler import get_asgi_application  # Django's, without per-request thread hops

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spignosapi.settings")
django_asgi_app = get_asgi_application()

from urllib.parse import ParseResult  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from spignosapi import runtime, tracing  # noqa: E402
from spignosapi.websocket_urls import websocket_urlpatterns  # noqa: E402


class BrowserOriginValidator(OriginValidator):
    """A browser's WebSocket must come from one of ALLOWED_HOSTS (it carries the session cookie).

    Clients that send no Origin at all are not browsers; they authenticate with an API key.
    """

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        return parsed_origin is None or bool(self.validate_origin(parsed_origin))


# With an OTLP endpoint configured, one server span per request (else the handler as it is, unwrapped).
http_app = tracing.server_spans(django_asgi_app) if tracing.setup("web") else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": BrowserOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.ALLOWED_HOSTS
        ),
    }
)

runtime.freeze_startup_objects()  # last: everything imported above lives as long as the process
