"""Typed readers of the environment that fail loudly on bad values.

Every setting that may differ between development and production is read here, so production differs
from development by environment variables only. A value that cannot be parsed raises
``ImproperlyConfigured`` naming the variable instead of silently falling back to a default.
A secret ``NAME`` can also be given as ``NAME_FILE``, the path of a file holding it (Docker secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get(name)


def env_str(name: str, default: str = "", *, environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool = False, *, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {value!r}")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None or value.strip() == "":
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and parsed < minimum or maximum is not None and parsed > maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {parsed}")
    return parsed


def env_float(
    name: str, default: float, *, minimum: float | None = None, environ: Mapping[str, str] | None = None
) -> float:
    value = _raw(name, environ)
    if value is None or value.strip() == "":
        return default
    try:
        parsed = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if parsed != parsed or (minimum is not None and parsed < minimum):  # NaN or below the bound
        raise ImproperlyConfigured(f"{name} must be a number >= {minimum}, got {value!r}")
    return parsed


def env_list(name: str, default: list[str], *, environ: Mapping[str, str] | None = None) -> list[str]:
    value = _raw(name, environ)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """``NAME`` or the content of the file named by ``NAME_FILE`` (not both)."""
    value = _raw(name, environ)
    path = _raw(f"{name}_FILE", environ)
    if value is not None and path is not None:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path!r}: {exc.strerror}") from None
    return default if value is None else value
