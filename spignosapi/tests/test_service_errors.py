"""A ``ServiceError`` becomes the envelope in one place: its reason says the status and type."""

from __future__ import annotations

import pytest

from spignosapi.api.errors import error_parts
from spignosapi.errors import Reason, ServiceError

EXPECTED = {
    Reason.INVALID: (400, "invalid_request_error"),
    Reason.FORBIDDEN: (403, "permission_error"),
    Reason.NOT_FOUND: (404, "not_found_error"),
    Reason.CONFLICT: (409, "conflict_error"),
    Reason.RATE_LIMITED: (429, "rate_limit_error"),
    Reason.QUOTA_EXCEEDED: (429, "insufficient_quota"),
    Reason.UPSTREAM_FAILED: (502, "upstream_error"),
    Reason.UNAVAILABLE: (503, "service_unavailable"),
    Reason.UPSTREAM_TIMEOUT: (504, "timeout_error"),
}


def test_every_reason_has_a_status() -> None:
    assert set(EXPECTED) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_it_renders_each_reason_as_its_status_and_type(reason: Reason) -> None:
    error = ServiceError("It went wrong.", reason=reason, code="some_code", param="model", extra={"attempts": []})
    parts = error_parts(error)
    assert parts is not None
    body, status, headers = parts
    assert (status, body["error"]["type"]) == EXPECTED[reason]
    assert body == {
        "error": {
            "message": "It went wrong.",
            "type": EXPECTED[reason][1],
            "code": "some_code",
            "param": "model",
            "attempts": [],
        }
    }
    assert headers == ({"Retry-After": "1"} if reason is Reason.RATE_LIMITED else {})


def test_it_sends_retry_after_when_the_error_has_one() -> None:
    error = ServiceError("Busy.", reason=Reason.UNAVAILABLE, code="no_model_available", retryable=True, retry_after=30)
    parts = error_parts(error)
    assert parts is not None
    assert parts[1:] == (503, {"Retry-After": "30"})
    assert error.retryable is True
