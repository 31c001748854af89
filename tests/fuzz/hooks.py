"""Schemathesis hooks for the fuzz run (loaded through SCHEMATHESIS_HOOKS=tests.fuzz.hooks)."""

from __future__ import annotations

from typing import Any

import schemathesis

# The Anthropic-compatible routes answer in Anthropic's envelope instead (routing/anthropic_api.py).
ANTHROPIC_PATHS = ("/v1/messages",)


@schemathesis.check
def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is the platform's ``{"error": {"message", "type", "code", "param"}}`` (Anthropic's
    ``{"type": "error", "error": {"type", "message"}}`` on the Anthropic routes)."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} answered with a body that is not JSON") from None
    error = body.get("error") if isinstance(body, dict) else None
    if str(case.path).startswith(ANTHROPIC_PATHS):
        if body.get("type") != "error" or not isinstance(error, dict) or not {"type", "message"} <= set(error):
            raise AssertionError(f"{response.status_code} without Anthropic's error envelope: {str(body)[:200]}")
        if not isinstance(error["message"], str) or not error["message"]:
            raise AssertionError(f"{response.status_code} with an empty error message")
        return True
    if not isinstance(error, dict) or not {"message", "type", "code", "param"} <= set(error):
        raise AssertionError(f"{response.status_code} without the error envelope: {str(body)[:200]}")
    if not isinstance(error["message"], str) or not error["message"]:
        raise AssertionError(f"{response.status_code} with an empty error message")
    return True
