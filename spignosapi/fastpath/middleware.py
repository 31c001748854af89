"""Django's own middleware, async-native: an ASGI request to an async view never leaves the event loop.

Replaces: Django's ``SecurityMiddleware``, ``SessionMiddleware``, ``CommonMiddleware``, ``CsrfViewMiddleware``,
``AuthenticationMiddleware``, ``MessageMiddleware``, ``XFrameOptionsMiddleware`` and WhiteNoise's
``WhiteNoiseMiddleware`` (each class here subclasses the one it replaces; ``settings.MIDDLEWARE`` names ours).

Measured gain: alone against the stock classes, behind our handler, an async view (``GET /health``) costs
225 instead of 1405 µs of CPU twenty requests at a time, and a DRF view (a 401) 1133 instead of 2103
(``python -m bench.fastpath``, 2026-12-04; a shared 2-core machine at load average 6-10: noisy). With
``handler`` it ended the one-thread bottleneck of issue 9: that first round of speed-ups took a proxied JSON
request from 12.2 to 1.66 ms of web CPU and 108 to 951 requests/s at c=50 (``make bench``, 2026-11-23;
``bench/README.md``, "What was on the hot path", items 1 and 2).

Why: under ASGI, Django runs every ``MiddlewareMixin`` hook through ``sync_to_async(thread_sensitive=True)``:
two hops to the process's single sync thread per middleware per request, so concurrent requests queue for
that thread. WhiteNoise's middleware is sync-only, which makes Django run the whole rest of the request
inside that thread. The classes below run their CPU-only hooks on the event loop; a hook that may do I/O (a
session or CSRF token stored in the session, serving a static file, a POST whose form data must be parsed)
still runs in the thread, as before. Sessions and message storages are built only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as message_middleware
from django.contrib.messages.storage import default_storage
from django.contrib.sessions import middleware as session_middleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security
from django.utils.functional import SimpleLazyObject, empty
from whitenoise import middleware as whitenoise_middleware


class _InlineHooks:
    """For a ``MiddlewareMixin`` subclass whose ``process_request``/``process_response`` do no I/O."""

    def _inline_request(self, request: HttpRequest) -> bool:
        return True

    def _inline_response(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return True

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        middleware: Any = self
        response: HttpResponseBase | None = None
        process_request = getattr(self, "process_request", None)
        if process_request is not None:
            if self._inline_request(request):
                response = process_request(request)
            else:
                response = await sync_to_async(process_request, thread_sensitive=True)(request)
        response = response or await middleware.get_response(request)
        process_response = getattr(self, "process_response", None)
        if process_response is not None:
            if self._inline_response(request, response):
                response = process_response(request, response)
            else:
                response = await sync_to_async(process_response, thread_sensitive=True)(request, response)
        return response


class SecurityMiddleware(_InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(_InlineHooks, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(_InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class AuthenticationMiddleware(_InlineHooks, auth_middleware.AuthenticationMiddleware):
    """``request.user`` stays lazy: it is loaded (in a thread, by DRF or a sync view) only when used."""


def _untouched(value: Any) -> bool:
    """A lazy value that nobody has used (so it was never even built)."""
    return isinstance(value, SimpleLazyObject) and value._wrapped is empty


class SessionMiddleware(_InlineHooks, session_middleware.SessionMiddleware):
    """Only saving a modified session touches the database (then: in the thread).

    Without a session cookie the store is built on first use: API clients never use it, and for them
    ``process_response`` would find it unaccessed, unmodified and empty, with no cookie to delete.
    """

    def process_request(self, request: HttpRequest) -> None:
        if settings.SESSION_COOKIE_NAME in request.COOKIES:
            super().process_request(request)
        else:
            request.session = SimpleLazyObject(lambda: self.SessionStore(None))  # type: ignore[assignment]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if _untouched(getattr(request, "session", None)):
            return response
        return super().process_response(request, response)

    def _inline_response(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        session = getattr(request, "session", None)
        if session is None or _untouched(session):
            return True
        return not (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(_InlineHooks, message_middleware.MessageMiddleware):
    """Storing messages may touch the session; a request that neither read nor added any stores nothing.

    The storage is built on first use (most requests never use it).
    """

    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if _untouched(getattr(request, "_messages", None)):
            return response
        return super().process_response(request, response)

    def _inline_response(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is None or _untouched(storage) or not (storage.used or storage.added_new)


class CsrfViewMiddleware(_InlineHooks, csrf.CsrfViewMiddleware):
    """Token checks are CPU-only unless the token lives in the session or a form body must be parsed."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        if self.async_mode:
            # Django reads ``process_view`` off the instance when it builds the handler; an async one is
            # awaited on the event loop instead of being sent to the sync thread.
            self.process_view = self._aprocess_view  # type: ignore[method-assign,assignment]

    def _inline_request(self, request: HttpRequest) -> bool:
        return not settings.CSRF_USE_SESSIONS

    def _inline_response(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return not settings.CSRF_USE_SESSIONS

    async def _aprocess_view(
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        view = csrf.CsrfViewMiddleware.process_view
        if not settings.CSRF_USE_SESSIONS and (
            getattr(callback, "csrf_exempt", False) or request.method in ("GET", "HEAD", "OPTIONS", "TRACE")
        ):
            return view(self, request, callback, callback_args, callback_kwargs)
        return await sync_to_async(view, thread_sensitive=True)(self, request, callback, callback_args, callback_kwargs)


class WhiteNoiseMiddleware(whitenoise_middleware.WhiteNoiseMiddleware):
    """WhiteNoise, async-capable: a request for anything but a static file costs one dictionary lookup."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any] | None = None, settings: Any = settings) -> None:
        super().__init__(get_response, settings=settings)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:  # development: looks at the disk
            refreshed: HttpResponseBase = await sync_to_async(super().__call__, thread_sensitive=True)(request)
            return refreshed
        static_file = self.files.get(request.path_info)
        if static_file is not None:
            served: HttpResponseBase = await sync_to_async(self.serve, thread_sensitive=True)(static_file, request)
            return served
        response: HttpResponseBase = await self.get_response(request)
        return response
