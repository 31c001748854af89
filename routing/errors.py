"""The gateway's error: a ``ServiceError`` raised by limits, routing, the chain walk and the embedding call.

Front doors let it propagate (the HTTP layer renders it); workers read ``retryable`` and ``retry_after``.
"""

from __future__ import annotations

from typing import Any

from llm import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    LLMError,
    NotFoundError,
    UnsupportedParameterError,
)
from spignosapi.errors import Reason, ServiceError

__all__ = ["GatewayError", "Reason", "final_error"]


class GatewayError(ServiceError):
    """A call the gateway could not serve (see ``ServiceError`` for the fields)."""


def final_error(error: LLMError, attempts: list[dict[str, Any]]) -> GatewayError:
    """A non-retryable upstream error, as the client should see it."""
    extra = {"attempts": attempts}
    if isinstance(error, ContentFilteredError):
        return GatewayError(error.message, reason=Reason.INVALID, code="content_filter", extra=extra)
    if isinstance(error, UnsupportedParameterError):
        return GatewayError(
            error.message, reason=Reason.INVALID, code="unsupported_parameter", param=error.param, extra=extra
        )
    if isinstance(error, BadRequestError):
        return GatewayError(
            f"The upstream model refused the request: {error.message}",
            reason=Reason.INVALID,
            code="upstream_bad_request",
            extra=extra,
        )
    if isinstance(error, AuthenticationError):
        return GatewayError(
            "The upstream provider refused the platform's credentials.",
            reason=Reason.UPSTREAM_FAILED,
            code="upstream_authentication_failed",
            extra=extra,
        )
    if isinstance(error, NotFoundError):
        return GatewayError(
            "The upstream provider does not know this model.",
            reason=Reason.UPSTREAM_FAILED,
            code="upstream_model_not_found",
            extra=extra,
        )
    return GatewayError(
        f"The upstream model failed: {error.message}", reason=Reason.UPSTREAM_FAILED, code=error.code, extra=extra
    )
