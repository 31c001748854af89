"""What ``GET /api/v1/status`` reports: is the platform ready to generate."""

from __future__ import annotations

from typing import Any


def readiness() -> dict[str, Any]:
    from routing.readiness import model_states

    models = model_states()
    ready = any(m["ready"] for m in models)
    return {"status": "ready" if ready else "not_ready", "models": models}
