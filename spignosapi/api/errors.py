"""One error envelope for every ``/api/`` and ``/v1/`` response (contract section 2).

``{"error": {"message": str, "type": str, "code": str | None, "param": str | None}}`` with the HTTP status
on the exception class, as DRF does. Views raise ``ApiError`` subclasses (or DRF's own exceptions);
``exception_handler`` renders all of them, and ``json_404``/``json_500`` cover what never reaches DRF.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db.utils import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from spignosapi.errors import Reason, ServiceError

logger = logging.getLogger(__name__)

# The OpenAI error ``type`` for each status, so SDKs map them to their typed exceptions.
TYPE_FOR_STATUS: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ApiError(exceptions.APIException):
    """Base of the platform's API errors: status, type and code on the class, param per instance."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    error_type = "invalid_request_error"
    default_code = "invalid_request"
    default_detail = "Invalid request."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.default_detail, code or self.default_code)
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class InvalidRequest(ApiError):
    pass


class NotFound(ApiError):
    status_code = 404
    error_type = "not_found_error"
    default_code = "not_found"
    default_detail = "Not found."


class Conflict(ApiError):
    status_code = 409
    error_type = "conflict_error"
    default_code = "conflict"
    default_detail = "Conflict."


class PayloadTooLarge(ApiError):
    status_code = 413
    default_code = "request_too_large"
    default_detail = "Request body too large."


class Unprocessable(ApiError):
    status_code = 422
    default_code = "unprocessable"
    default_detail = "Request could not be processed."


class RateLimited(ApiError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    default_detail = "Rate limit exceeded."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int,
        code: str | None = None,
        param: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        headers = {"Retry-After": str(max(1, int(retry_after)))}
        super().__init__(message, code=code, param=param, headers=headers, extra=extra)


class UpstreamFailed(ApiError):
    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_failed"
    default_detail = "Every upstream model failed."


class ServiceUnavailable(ApiError):
    status_code = 503
    error_type = "service_unavailable"
    default_code = "service_unavailable"
    default_detail = "A dependency is unavailable."


class UpstreamTimeout(ApiError):
    status_code = 504
    error_type = "timeout_error"
    default_code = "upstream_timeout"
    default_detail = "The upstream model timed out."


class Forbidden(ApiError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"
    default_detail = "Forbidden."


class QuotaExceeded(ApiError):
    status_code = 429
    error_type = "insufficient_quota"
    default_code = "budget_exceeded"
    default_detail = "A budget is spent."


# The one translation of a ``ServiceError``'s reason into HTTP (``RATE_LIMITED`` is ``RateLimited``, whose
# constructor takes the wait: see ``api_error_for``).
API_ERROR_FOR_REASON: Mapping[Reason, type[ApiError]] = {
    Reason.INVALID: InvalidRequest,
    Reason.FORBIDDEN: Forbidden,
    Reason.NOT_FOUND: NotFound,
    Reason.CONFLICT: Conflict,
    Reason.QUOTA_EXCEEDED: QuotaExceeded,
    Reason.UPSTREAM_FAILED: UpstreamFailed,
    Reason.UNAVAILABLE: ServiceUnavailable,
    Reason.UPSTREAM_TIMEOUT: UpstreamTimeout,
}


def api_error_for(exc: ServiceError) -> ApiError:
    """The HTTP form of a ``ServiceError``: status and type from its reason, ``Retry-After`` from ``retry_after``."""
    if exc.reason is Reason.RATE_LIMITED:
        return RateLimited(
            exc.message, retry_after=exc.retry_after or 1, code=exc.code, param=exc.param, extra=exc.extra
        )
    headers = {"Retry-After": str(max(1, int(exc.retry_after)))} if exc.retry_after is not None else None
    error_class = API_ERROR_FOR_REASON[exc.reason]
    return error_class(exc.message, code=exc.code, param=exc.param, headers=headers, extra=exc.extra)


def envelope(
    message: str, *, status_code: int, code: str | None = None, param: str | None = None, error_type: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": error_type or TYPE_FOR_STATUS.get(status_code, "api_error"),
            "code": code,
            "param": param,
        }
    }


def _first_validation_error(detail: Any, path: str = "") -> tuple[str, str | None, str | None]:
    """(message, code, param) of the first leaf of a DRF ``ValidationError.detail`` tree."""
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            child = str(key) if key != "non_field_errors" else ""
            return _first_validation_error(value, f"{path}.{child}" if path and child else (child or path))
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, (Mapping, list)):
            index_path = f"{path}[0]" if all(isinstance(d, (Mapping, list)) for d in detail) else path
            return _first_validation_error(first, index_path)
        return _first_validation_error(first, path)
    code = getattr(detail, "code", None)
    message = f"{path}: {detail}" if path else str(detail)
    return message, (str(code) if code else "invalid"), (path or None)


def error_parts(exc: Exception) -> tuple[dict[str, Any], int, dict[str, str]] | None:
    """(body, status, headers) of the envelope for ``exc``; ``None`` for an exception that is a bug."""
    headers: dict[str, str] = {}
    if isinstance(exc, ServiceError):
        exc = api_error_for(exc)
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, Http404):
        exc = NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, (OperationalError, InterfaceError)):
        # The database is down or unreachable: a dependency failed, not the request (no traceback sent).
        logger.warning("database unavailable: %s", str(exc).strip().splitlines()[0] if str(exc) else type(exc))
        exc = ServiceUnavailable(
            "The database is unavailable; try again shortly.", code="database_unavailable", headers={"Retry-After": "5"}
        )

    if isinstance(exc, ApiError):
        body = envelope(
            str(exc.detail),
            status_code=exc.status_code,
            code=str(exc.get_codes()),
            param=exc.param,
            error_type=exc.error_type,
        )
        body["error"].update(exc.extra)
        headers.update(exc.headers)
        return body, exc.status_code, headers

    if isinstance(exc, exceptions.ValidationError):
        message, code, param = _first_validation_error(exc.detail)
        return envelope(message, status_code=400, code=code, param=param), 400, headers

    if isinstance(exc, exceptions.APIException):
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            headers["Retry-After"] = str(max(1, int(wait)))
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else None
        if isinstance(exc, exceptions.ParseError) and code in (None, "parse_error"):
            code = "invalid_json"
        return envelope(str(exc.detail), status_code=exc.status_code, code=code), exc.status_code, headers
    return None


INTERNAL_ERROR = envelope("Internal server error.", status_code=500, code="internal_error")


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: every exception a view raises becomes the envelope."""
    parts = error_parts(exc)
    if parts is None:
        # Anything else is a bug: log it with its traceback, answer the envelope, never HTML.
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__)
        return Response(INTERNAL_ERROR, status=500)
    body, status_code, headers = parts
    return Response(body, status=status_code, headers=headers)


def error_response(exc: Exception) -> JsonResponse:
    """The envelope as a plain Django response, for the async views that do not go through DRF."""
    parts = error_parts(exc)
    if parts is None:
        logger.error("unhandled error", exc_info=exc)
        return JsonResponse(INTERNAL_ERROR, status=500)
    body, status_code, headers = parts
    response = JsonResponse(body, status=status_code)
    for name, value in headers.items():
        response[name] = value
    return response


def is_api_path(path: str) -> bool:
    return path.startswith(("/api/", "/v1/", "/chat/completions"))


def json_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_path(request.path):
        return JsonResponse(envelope("Not found.", status_code=404, code="not_found"), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Http404())


def json_500(request: HttpRequest) -> HttpResponse:
    if is_api_path(request.path):
        return JsonResponse(envelope("Internal server error.", status_code=500, code="internal_error"), status=500)
    from django.views.defaults import server_error

    return server_error(request)


def json_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(envelope("Request body too large.", status_code=413, code="request_too_large"), status=413)
    if is_api_path(request.path):
        return JsonResponse(envelope("Bad request.", status_code=400, code="bad_request"), status=400)
    from django.views.defaults import bad_request

    return bad_request(request, exception or Exception())
