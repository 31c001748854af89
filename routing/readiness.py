"""What ``GET /api/v1/status`` lists: every routable model with its breaker."""

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
