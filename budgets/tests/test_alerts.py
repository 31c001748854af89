"""A budget's soft threshold: one signed ``budget.threshold`` webhook per period, delivered by the real worker
to a receiver on loopback, and the gauge of the fraction spent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pytest_django import Settings

from accounts.selectors import KeyInfo
from accounts.services import apikey_create
from budgets.counters import Spend
from budgets.metrics import BudgetCollector
from budgets.models import Budget
from budgets.selectors import budget_info
from routing.limits import BudgetCost, admit_key_sync, settle_tokens
from spignosapi.fastpath.redis_client import cache_redis
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_crossing_the_soft_threshold_sends_one_webhook_and_sets_the_gauge(
    celery_worker: subprocess.Popen[bytes], received: tuple[str, list[dict[str, Any]]], settings: Settings
) -> None:
    url, bodies = received
    settings.WEBHOOK_URLS = [url]
    cache_redis.sync_client().flushdb()
    key, _ = apikey_create(name="alerted", rpm_limit=100_000, tpm_limit=10**9)
    row = Budget.objects.create(
        scope="key", metric="usd", period="day", limit=Decimal(1), soft_threshold=Decimal("0.5"), api_key=key
    )
    info = KeyInfo(key.pk, key.name, False, 100_000, 10**9, None, None, None, key.hashed_key)

    def call_costing(usd: float) -> None:
        reservation = admit_key_sync(
            info, prompt_tokens=1, max_tokens=1, budgets=[BudgetCost(budget_info(row), "", 200_000)]
        )
        asyncio.run(settle_tokens(reservation, 2, Spend(usd), booked_at=datetime.now(UTC).timestamp()))

    call_costing(0.3)
    call_costing(0.3)  # 0.6 of 1 USD: past 0.5
    call_costing(0.1)  # still past it: no second webhook this period
    assert wait_until(lambda: len(bodies) == 1, timeout=30)
    [body] = bodies
    assert body["type"] == "budget.threshold"
    assert body["data"]["budget"] == {
        "id": row.pk,
        "scope": "key",
        "metric": "usd",
        "period": "day",
        "limit": "1",
        "soft_threshold": "0.5",
        "api_key_id": key.pk,
        "team_id": None,
    }
    assert (body["data"]["spent"], body["data"]["fraction"]) == (0.6, 0.6)

    [family] = BudgetCollector().collect()
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"budget": str(row.pk), "scope": "key", "metric": "usd", "period": "day"}, pytest.approx(0.7))
    ]
    assert len(bodies) == 1
