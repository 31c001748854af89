"""Keeps the request being served where the audit log finds its actor (``audit.actors``).

Async-capable, so an ASGI request never leaves the event loop for it; it costs one context variable per
request (django-auditlog's own middleware is sync-only and connects a signal receiver per request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from .actors import current_request


class AuditActorMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        token = current_request.set(request)
        try:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
            return await get_response(request)
        finally:
            current_request.reset(token)
