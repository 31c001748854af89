"""DRF authentication by API key: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .selectors import KeyInfo, apikey_find, key_refusal


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """``request.user`` for a key-authenticated request (``request.auth`` is its ``KeyInfo``)."""

    key_id: int
    name: str
    is_staff: bool
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> int:
        return self.key_id


def raw_key_from(request: Request | HttpRequest) -> str | None:
    header: str = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    value = str(request.META.get("HTTP_X_API_KEY", "")).strip()
    return value or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, KeyInfo] | None:
        raw = raw_key_from(request)
        if raw is None:
            if request.META.get("HTTP_AUTHORIZATION") or request.META.get("HTTP_X_API_KEY") is not None:
                raise exceptions.AuthenticationFailed("Malformed API key header.", code="invalid_api_key")
            return None
        key = usable_key(apikey_find(raw))
        return ApiKeyPrincipal(key_id=key.id, name=key.name, is_staff=key.is_staff), key

    def authenticate_header(self, request: Request) -> str:
        # A value here makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="api"'


def usable_key(key: KeyInfo | None) -> KeyInfo:
    """``key`` if it may be used now, else the 401 that says why: unknown, disabled, expired."""
    if key is None:
        raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    refusal = key_refusal(key)
    if refusal is not None:
        code, message = refusal
        raise exceptions.AuthenticationFailed(message, code=code)
    return key
