"""OpenAPI post-processing: every operation documents the platform's error envelope for 4xx and 5xx.

Views document their successful answers; the errors all share one shape (contract section 2), so they are
added here once instead of on each view.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code", "param"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "description": "e.g. invalid_request_error, authentication_error"},
                "code": {"type": "string", "nullable": True},
                "param": {"type": "string", "nullable": True, "description": "the offending field, if any"},
            },
        }
    },
}
# A text/event-stream answer, as OpenAPI tools read one: a sequence of events whose data is a JSON document.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "description": "one JSON document per event (a final [DONE] on /v1)"},
        "id": {"type": "string"},
    },
}

ERROR_RESPONSES = {
    "4XX": "The request was refused (bad input, authentication, permission, not found, limits).",
    "5XX": "The platform or an upstream model failed.",
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method not in ("get", "post", "put", "patch", "delete") or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_RESPONSES.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                )
    return result
