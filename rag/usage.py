"""Usage records of calls that only embed: the key pays its input tokens, there is no completion."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ledger.accounting import account
from ledger.buffer import usage_buffer
from ledger.rows import UsageRow
from routing.selectors import routing_config


def embedding_usage_book(
    *,
    key_id: int | None,
    request_id: str,
    endpoint: str,
    model_id: str,
    tokens: int,
    started: float,
    user: str,
    error: str,
) -> UsageRow:
    """Book the call (buffered); the row as it will be written (what the key's budgets are settled with)."""
    info = routing_config.get().models.get(model_id)
    cost = account(info, tokens, 0)
    row = UsageRow(
        request_id=request_id,
        api_key_id=key_id,
        user_id=user[:200],
        endpoint=endpoint,
        category="",
        route_mode="model",
        model=model_id,
        provider=info.provider if info else "",
        attempts=[{"model": model_id, "outcome": "error" if error else "ok"}],
        status="error" if error else "ok",
        error_code=error[:60],
        stream=False,
        prompt_tokens=tokens,
        completion_tokens=0,
        ttft_ms=None,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        **cost.usage_fields(),
        created_at=datetime.now(UTC),
    )
    usage_buffer.add(row)
    return row
