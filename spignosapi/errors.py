"""The platform's own error: what went wrong, said without HTTP.

The gateway, workers and RAG raise ``ServiceError`` (or a subclass, e.g. ``routing.errors.GatewayError``);
only the HTTP layer (``spignosapi.api.errors``) turns one into a status and an envelope, and a worker reads
``retryable`` instead of matching error codes. The ``reason`` is the meaning a client acts on; ``code`` is the
machine-readable detail the envelope carries (contract section 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a request was not served; the HTTP layer maps each to one status (``spignosapi.api.errors``)."""

    INVALID = "invalid"  # the request cannot be served as asked
    FORBIDDEN = "forbidden"  # the caller may not do this
    NOT_FOUND = "not_found"  # a named model, category, collection… does not exist (for this caller)
    CONFLICT = "conflict"  # the target is not in a state to take the request
    RATE_LIMITED = "rate_limited"  # a limit per minute: try again after ``retry_after``
    QUOTA_EXCEEDED = "quota_exceeded"  # a budget is spent until its period resets
    UPSTREAM_FAILED = "upstream_failed"  # the model (or every model) failed
    UNAVAILABLE = "unavailable"  # nothing can take the request now (open breakers, a dependency down)
    UPSTREAM_TIMEOUT = "upstream_timeout"  # the model (or every model) timed out


class ServiceError(Exception):
    """A request the platform could not serve, with what a caller needs to act on it.

    ``retryable``: the same request may succeed later (a worker retries it; a client may, after
    ``retry_after`` seconds when given). ``extra`` is merged into the error body (e.g. ``attempts``).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: Reason,
        code: str,
        param: str | None = None,
        retryable: bool = False,
        retry_after: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.code = code
        self.param = param
        self.retryable = retryable
        self.retry_after = retry_after
        self.extra = dict(extra or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason.value}, {self.code!r}, {self.message!r})"
