"""The one error hierarchy of `llm`: every vendor exception is turned into one of these.

Callers (the router, the breaker) read `retryable`, `status_code`, `retry_after` and `code`, never vendor
exception classes. Messages never contain the provider's API key.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ContentFilteredError",
    "InvalidResponseError",
    "LLMConnectionError",
    "LLMError",
    "LLMTimeoutError",
    "NotFoundError",
    "ProviderNotConfiguredError",
    "RateLimitedError",
    "UnsupportedParameterError",
    "UpstreamServerError",
    "error_for_status",
    "parse_retry_after",
]


class LLMError(Exception):
    """Base class. `retryable` defaults per class and may be overridden per instance."""

    code: ClassVar[str] = "llm_error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        self.status_code = status_code
        self.retry_after = retry_after
        self.provider = provider
        self.model = model

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"provider={self.provider!r}, model={self.model!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive pickling by default (Celery pickles exceptions).
        return (_restore, (type(self), dict(self.__dict__)))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description, for API error envelopes and job records."""
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "status_code": self.status_code,
            "retry_after": self.retry_after,
            "provider": self.provider,
            "model": self.model,
        }


def _restore(cls: type[LLMError], state: dict[str, Any]) -> LLMError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class LLMTimeoutError(LLMError):
    """`phase` is "connect", "first_token" or "total"."""

    code = "timeout"
    default_retryable = True

    def __init__(self, message: str, *, phase: str = "total", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.phase = phase


class LLMConnectionError(LLMError):
    code = "connection_error"
    default_retryable = True


class RateLimitedError(LLMError):
    code = "rate_limited"
    default_retryable = True


class UpstreamServerError(LLMError):
    code = "upstream_error"
    default_retryable = True


class AuthenticationError(LLMError):
    code = "authentication_error"


class BadRequestError(LLMError):
    code = "bad_request"


class NotFoundError(LLMError):
    code = "not_found"


class ContentFilteredError(LLMError):
    code = "content_filtered"


class UnsupportedParameterError(BadRequestError):
    """A request parameter the provider cannot honour (`param` names it); the caller's to change, not retried.

    A `BadRequestError`, so callers that know only that class still answer 400.
    """

    code = "unsupported_parameter"

    def __init__(self, message: str, *, param: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.param = param

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "param": self.param}


class ProviderNotConfiguredError(LLMError):
    code = "provider_not_configured"


class InvalidResponseError(LLMError):
    code = "invalid_response"
    default_retryable = True


_MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or HTTP date).

    `headers` must be case-insensitive (httpx headers are) or use lower-case names.
    """
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000.0
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, _MAX_RETRY_AFTER_S)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
        seconds = max(seconds, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, _MAX_RETRY_AFTER_S)


def error_for_status(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    error_code: str | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> LLMError:
    """Map an upstream HTTP error status (with its vendor error `code`, if any) to our error class."""
    kwargs: dict[str, Any] = {"status_code": status, "provider": provider, "model": model}
    if error_code == "content_filter" or error_code == "content_policy_violation":
        return ContentFilteredError(message, **kwargs)
    if status == 429:
        # An exhausted quota or credit balance will not heal by retrying the same provider soon.
        retryable = error_code not in ("insufficient_quota", "billing_hard_limit_reached")
        return RateLimitedError(message, retryable=retryable, retry_after=parse_retry_after(headers), **kwargs)
    if status in (401, 403):
        return AuthenticationError(message, **kwargs)
    if status == 404:
        return NotFoundError(message, **kwargs)
    if status in (408, 409) or status >= 500:
        return UpstreamServerError(message, retry_after=parse_retry_after(headers), **kwargs)
    return BadRequestError(message, **kwargs)
