"""``UsageRow``: one usage record as the gateway and the embedding endpoints book it, before it is written.

Every column of ``UsageRecord`` but its id, with the model's defaults, in table order (a test holds the two
together). The buffer keeps rows, not model instances: building a Django model costs a request's worth of
CPU, and the writer copies the rows straight into the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRow:
    request_id: str
    api_key_id: int | None = None
    user_id: str = ""
    endpoint: str
    category: str = ""
    route_mode: str = ""
    model: str = ""  # the model that answered
    provider: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"
    error_code: str = ""
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    latency_ms: float = 0.0
    tokens_per_sec: float | None = None
    # How the call was accounted (``ledger.accounting.Cost.usage_fields``), copied as it was then.
    cost_usd: Decimal | float = 0
    energy_wh: float = 0.0
    co2e_g: float = 0.0
    energy_kwh_per_m: float | None = None
    energy_input_kwh_per_m: float | None = None
    energy_coefficient_id: int | None = None
    energy_estimated: bool = False
    energy_wh_low: float = 0.0
    energy_wh_high: float = 0.0
    co2e_g_low: float = 0.0
    co2e_g_high: float = 0.0
    grid_g_co2e_per_kwh: float | None = None
    created_at: datetime
