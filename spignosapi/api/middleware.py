"""The platform's own middleware: ``X-Request-ID`` on every response, a 404 for paths no route can have.

Both are async-capable, so an ASGI request to an async view never leaves the event loop; Django's own
middleware, made async-native, is in ``spignosapi.fastpath.middleware``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import Http404, HttpRequest, HttpResponseBase

from spignosapi.logs import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_for(request: HttpRequest) -> str:
    sent = request.META.get("HTTP_X_REQUEST_ID", "")  # request.headers would parse every header
    return sent if _SAFE_ID.match(sent) else _uuid4_hex()


def _uuid4_hex() -> str:
    """``uuid.uuid4().hex`` (random bytes with the version and variant bits set), without the UUID object."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


class _EitherMiddleware:
    """A middleware that runs as its chain does, sync or async: an ASGI request never hops to a thread just
    for it. ``__call__`` hands over to ``__acall__`` when ``is_async``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        raise NotImplementedError


class RequestIDMiddleware(_EitherMiddleware):
    """Sets ``request.request_id`` and the logging context, and stamps the response header."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request_id = request_id_for(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response: HttpResponseBase = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_for(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
            response = await get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


# Characters no route's path holds: C0 and C1 control characters (NUL among them, which PostgreSQL refuses
# in text: a query with it was a 500), DEL, and U+FFFD, what the server decodes an escape that is not UTF-8
# (%FF) to. Lone surrogates cannot be encoded in UTF-8 at all.
_NOT_IN_ANY_PATH = re.compile("[\x00-\x1f\x7f-\x9f\ufffd\ud800-\udfff]")
# Longer than any path of the platform (the longest, a breaker reset with the longest model id, has ~300).
MAX_PATH_LENGTH = 2048


class PathGuardMiddleware(_EitherMiddleware):
    """Answers 404 (the API's JSON envelope, or the 404 page) to a path holding a character no id can have,
    or longer than any route's, on every route and for every method, before the path is resolved: a route's
    converter (``<path:…>``, ``<str:…>``, the admin's object ids) then never hands such an id to a view or a
    query. (The platform's own ids have converters of their own: ``spignosapi.converters``.)
    """

    def __call__(self, request: HttpRequest) -> Any:
        path = request.path_info
        if len(path) > MAX_PATH_LENGTH or _NOT_IN_ANY_PATH.search(path):
            raise Http404("No route has this path.")  # Django's handler404 answers (json_404 for the API)
        return self.get_response(request)
