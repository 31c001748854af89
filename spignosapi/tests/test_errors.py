"""Every /api/ error is the one JSON envelope with the right status (contract section 2)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pytest_django import Settings
from rest_framework.test import APIClient

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_errors")]


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"message", "type", "code", "param"}
    return dict(body["error"])


def test_it_rejects_invalid_json_with_400(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/test/echo", data=b"{not json", content_type="application/json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_json"
    assert error["message"].startswith("JSON parse error")


def test_it_rejects_nan_as_invalid_json(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/v1/test/echo", data=b'{"prompt": "x", "temperature": NaN}', content_type="application/json"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_it_names_the_invalid_field(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/test/echo", {"prompt": "hi", "temperature": 5}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error == {
        "message": "temperature: Ensure this value is less than or equal to 2.",
        "type": "invalid_request_error",
        "code": "max_value",
        "param": "temperature",
    }


def test_it_names_a_missing_required_field(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/test/echo", {}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert (error["param"], error["code"]) == ("prompt", "required")


def test_it_answers_401_without_a_key() -> None:
    response = APIClient().get("/api/v1/test/staff")
    assert response.status_code == 401
    error = error_of(response)
    assert error["type"] == "authentication_error"
    assert error["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_it_answers_401_with_a_wrong_key() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer spg-not-a-real-key")
    response = client.get("/api/v1/test/staff")
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


def test_it_answers_403_to_a_normal_key_on_a_staff_endpoint(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/test/staff")
    assert response.status_code == 403
    error = error_of(response)
    assert error["type"] == "permission_error"
    assert error["message"] == "This endpoint requires a staff API key."


def test_it_lets_a_staff_key_in(staff_client: APIClient) -> None:
    response = staff_client.get("/api/v1/test/staff")
    assert response.status_code == 200
    assert response.json() == {"staff": True}


def test_it_answers_404_for_an_unknown_api_path(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert error_of(response) == {
        "message": "Not found.",
        "type": "not_found_error",
        "code": "not_found",
        "param": None,
    }


def test_it_answers_404_as_json_under_v1_even_without_a_key() -> None:
    response = Client().get("/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found_error"


def test_it_answers_405_for_a_wrong_method(api_client: APIClient) -> None:
    response = api_client.delete("/api/v1/status")
    assert response.status_code == 405
    error = error_of(response)
    assert error["code"] == "method_not_allowed"
    assert error["message"] == 'Method "DELETE" not allowed.'


def test_it_answers_409_with_its_param(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/test/conflict")
    assert response.status_code == 409
    assert error_of(response) == {
        "message": "Already exists.",
        "type": "conflict_error",
        "code": "conflict",
        "param": "name",
    }


def test_it_answers_429_with_retry_after(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/test/limited")
    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert error_of(response)["type"] == "rate_limit_error"


def test_it_answers_413_for_a_body_over_the_limit(api_client: APIClient, settings: Settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = b'{"prompt": "' + b"x" * 4096 + b'"}'
    response = api_client.post("/api/v1/test/echo", data=body, content_type="application/json")
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_it_turns_a_crash_in_an_api_view_into_a_500_envelope(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/test/broken")
    assert response.status_code == 500
    error = error_of(response)
    assert error == {"message": "Internal server error.", "type": "api_error", "code": "internal_error", "param": None}
    assert b"sk-should-not-leak" not in response.content


def test_it_turns_a_crash_outside_drf_into_a_500_envelope() -> None:
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/test/plain-broken")
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"


def test_it_echoes_a_sent_request_id(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/no-such-thing", HTTP_X_REQUEST_ID="trace-abc.123")
    assert response["X-Request-ID"] == "trace-abc.123"


def test_it_replaces_an_unsafe_request_id_with_a_fresh_one(api_client: APIClient) -> None:
    response = api_client.get("/health", HTTP_X_REQUEST_ID="bad id\nwith newline")
    generated = response["X-Request-ID"]
    assert len(generated) == 32 and all(c in "0123456789abcdef" for c in generated)


def test_every_response_has_a_request_id(api_client: APIClient) -> None:
    first = api_client.get("/api/v1/status")["X-Request-ID"]
    second = api_client.get("/api/v1/status")["X-Request-ID"]
    assert first != second
