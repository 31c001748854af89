"""What ``GET /api/v1/status`` reports: is the platform ready to generate, and every routable model with its
breaker."""

from __future__ import annotations

from typing import Any

from .selectors import breaker_rows, routing_config


def model_states() -> list[dict[str, Any]]:
    routable = set(routing_config.get().models)
    return [
        {"model": row["model"], "ready": row["state"] != "open", "breaker": row["state"]}
        for row in breaker_rows()
        if row["model"] in routable
    ]


def readiness() -> dict[str, Any]:
    """Ready when any routable model's breaker is not open."""
    models = model_states()
    ready = any(m["ready"] for m in models)
    return {"status": "ready" if ready else "not_ready", "models": models}
