"""Plumbing for the async gateway views, which skip DRF's (synchronous) request cycle.

Generation calls wait seconds on upstreams; as sync DRF views they would tie up a thread each. These views
are plain async Django views that reuse the same pieces: key authentication (from the in-memory key
table), the size-limited JSON parser, DRF serializers for validation (with DRF's rules, at a fraction of its
cost: ``spignosapi.fastpath.validation``), and the one error envelope. A DRF ``APIView`` subclass still
describes each endpoint, so drf-spectacular documents it like any other.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions

from accounts.authentication import raw_key_from, usable_key
from accounts.selectors import KeyInfo, active_keys, apikey_find, apikey_match, apikey_may_exist
from spignosapi.fastpath.validation import validated as validated  # the views' one validation step

from .errors import InvalidRequest, error_response
from .parsers import JSONParser

_parser = JSONParser()


async def authenticate(request: HttpRequest) -> KeyInfo:
    raw = raw_key_from(request)
    if raw is None:
        if request.META.get("HTTP_AUTHORIZATION") or request.META.get("HTTP_X_API_KEY") is not None:
            raise exceptions.AuthenticationFailed("Malformed API key header.", code="invalid_api_key")
        raise exceptions.NotAuthenticated()
    # The key table is in memory; only its check (at most once a second) needs a thread. A key that is not
    # in it may have been created a moment ago by another process: only then look at the version now.
    key = apikey_match(raw, await active_keys.aget())
    if key is None and apikey_may_exist(raw):
        key = await sync_to_async(apikey_find, thread_sensitive=False)(raw)
    return usable_key(key)  # a disabled or expired key: the 401 that says so


def json_body(request: HttpRequest) -> dict[str, Any]:
    content_type = request.META.get("CONTENT_TYPE", "")
    if content_type and not content_type.startswith("application/json"):
        raise exceptions.UnsupportedMediaType(content_type)
    data = _parser.parse(io.BytesIO(request.body))
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    return data


AsyncHandler = Callable[..., Awaitable[HttpResponseBase]]


def async_endpoint(schema_view: type, handlers: dict[str, AsyncHandler]) -> Any:
    """An async view dispatching by method to ``handlers``; ``schema_view`` documents it in OpenAPI.

    (Typed ``Any`` because django-stubs' ``path()`` does not accept coroutine views, which Django does.)
    """

    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        handler = handlers.get(request.method or "")
        try:
            if handler is None:
                raise exceptions.MethodNotAllowed(request.method or "")
            return await handler(request, *args, **kwargs)
        except Exception as exc:
            return error_response(exc)

    view.cls = schema_view  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    return csrf_exempt(view)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
