"""spignosapi/fastpath/middleware.py answers as the stock middleware it replaces.

``settings.MIDDLEWARE`` against the same list with each of our classes swapped for the Django (or WhiteNoise)
class it subclasses, both behind the same handler: API requests, the admin's pages and forms (session and
CSRF cookies, the CSRF check on a parsed form, its failure page), a static file and a redirect. Status,
headers (cookies included) and body must be the same, byte for byte. CSRF tokens are random per response, so
the tests make Django's token generator return a fixed string for both stacks, and its clock (expiry
dates) a fixed time.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any

import django.http.response
import django.utils.cache
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.middleware import csrf
from django.test import override_settings
from django.utils.module_loading import import_string

from accounts.services import apikey_create
from spignosapi import loops, snapshots
from spignosapi.fastpath import middleware as fastpath_middleware
from spignosapi.fastpath.handler import GatewayASGIHandler
from tests.asgi import Reply, serve

pytestmark = pytest.mark.django_db(transaction=True)  # hooks and views run in the request's thread


@pytest.fixture(autouse=True)
def _forget_the_keys_read() -> Iterator[None]:
    yield
    # The process's key table read this test's keys, which the test's end deletes without telling it.
    for snapshot in snapshots.registry.values():
        snapshot.invalidate()


SECRET = "s" * csrf.CSRF_SECRET_LENGTH
NOW = 1_800_000_000.0


def stock_middleware() -> list[str]:
    """``settings.MIDDLEWARE`` with each fast-path class replaced by the class it subclasses."""
    stock = []
    for path in settings.MIDDLEWARE:
        cls = import_string(path)
        if cls.__module__ == fastpath_middleware.__name__:
            [base] = [b for b in cls.__mro__ if b.__module__.startswith(("django.", "whitenoise."))][:1]
            path = f"{base.__module__}.{base.__qualname__}"
        stock.append(path)
    return stock


def test_the_stock_list_holds_django_s_classes_in_the_same_places() -> None:
    assert stock_middleware() == [
        "spignosapi.api.middleware.RequestIDMiddleware",
        "spignosapi.api.middleware.PathGuardMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "audit.middleware.AuditActorMiddleware",  # ours: who makes a staff change (after authentication)
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]


@pytest.fixture(autouse=True)
def _fixed_tokens_and_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    # Django's own randomness and clock, not ours: both stacks must mint the same CSRF token, and date a
    # cookie's or a page's expiry in the same second, for their answers to be compared byte for byte.
    monkeypatch.setattr(csrf, "_get_new_csrf_string", lambda: SECRET)
    frozen = types.SimpleNamespace(time=lambda: NOW)
    monkeypatch.setattr(django.http.response, "time", frozen)
    monkeypatch.setattr(django.utils.cache, "time", frozen)


def through_both(method: str, path: str, options: Callable[[], dict[str, Any]]) -> tuple[Reply, Reply]:
    """The request through the stock middleware, then through ours; ``options`` is called before each (a
    request that ends a session needs a session of its own)."""

    with override_settings(MIDDLEWARE=stock_middleware()):
        stock_app = GatewayASGIHandler()
    stock = loops.run(serve(stock_app, method, path, **options()))
    ours = loops.run(serve(GatewayASGIHandler(), method, path, **options()))
    return stock, ours


def session_cookie() -> str:
    """A new session of the same logged-in superuser, as the admin's login leaves it."""
    user = get_user_model().objects.filter(username="admin").first() or get_user_model().objects.create_superuser(
        "admin", password="pw-1234-secret"
    )
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def test_every_kind_of_request_gets_the_stock_middlewares_answer() -> None:
    _, key = apikey_create(name="k")
    csrf_cookie = ("Cookie", f"{settings.CSRF_COOKIE_NAME}={SECRET}")
    login_form = f"csrfmiddlewaretoken={SECRET}&username=nobody&password=wrong&next=/admin/".encode()
    requests: list[tuple[str, str, Callable[[], dict[str, Any]], int]] = [
        ("GET", "/health", lambda: {}, 200),
        ("GET", "/api/v1/status", lambda: {"key": key}, 200),
        ("GET", "/api/v1/status", lambda: {}, 401),
        ("POST", "/api/v1/generate", lambda: {"key": key, "chunks": (b'{"top_p": 9}',)}, 400),
        ("GET", "/v1/models", lambda: {"key": key}, 200),
        ("GET", "/admin", lambda: {}, 301),
        ("GET", "/admin/", lambda: {}, 302),  # to the login page
        ("GET", "/admin/login/", lambda: {}, 200),  # sets the CSRF cookie
        ("GET", "/admin/login/", lambda: {"headers": [csrf_cookie]}, 200),
        (
            "POST",
            "/admin/login/",
            lambda: {
                "chunks": (login_form,),
                "content_type": "application/x-www-form-urlencoded",
                "headers": [csrf_cookie, ("Referer", "http://testserver/admin/login/")],
            },
            200,  # the form again, with its error
        ),
        (
            "POST",
            "/admin/login/",
            lambda: {"chunks": (b"username=a&password=b",), "content_type": "application/x-www-form-urlencoded"},
            403,  # no CSRF cookie: Django's failure page
        ),
        ("GET", "/admin/", lambda: {"headers": [("Cookie", session_cookie())]}, 200),  # the session read
        (
            "POST",
            "/admin/logout/",
            lambda: {
                "chunks": (f"csrfmiddlewaretoken={SECRET}".encode(),),
                "content_type": "application/x-www-form-urlencoded",
                "headers": [("Cookie", f"{session_cookie()}; {csrf_cookie[1]}")],
            },
            200,  # the session ended: its cookie deleted
        ),
        ("GET", "/static/admin/css/base.css", lambda: {}, 200),  # WhiteNoise
        ("GET", "/api/v1/jobs/%00", lambda: {}, 404),
    ]
    replies = {}
    for method, path, options, status in requests:
        stock, ours = through_both(method, path, options)
        assert ours == stock, (method, path)
        assert stock[0] == status, (method, path, stock[0], stock[1])
        replies[method, path] = stock
    # The hooks that write did write: the CSRF cookie set, the ended session's cookie deleted.
    cookies = [value for name, value in replies["GET", "/admin/login/"][1] if name == b"Set-Cookie"]
    assert cookies == [
        b"csrftoken="
        + SECRET.encode()
        + b"; expires=Fri, 14 Jan 2028 08:00:00 GMT; Max-Age=31449600; Path=/; SameSite=Lax"
    ]
    cookies = [value for name, value in replies["POST", "/admin/logout/"][1] if name == b"Set-Cookie"]
    assert cookies == [b'sessionid=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=Lax']
