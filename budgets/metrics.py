"""``spignos_budget_used_ratio``: the fraction of each budget spent in its current period, at scrape time.

Read from the budget counters in Redis (one pipeline per scrape); a budget whose counter is not rebuilt yet
(no call since its period began or since Redis restarted) is left out rather than shown as 0. A user budget
for each end user has one counter per end user: it is left out too (that would be one series per user).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from spignosapi.fastpath.redis_client import cache_redis

from .counters import charge_for
from .models import Budget
from .selectors import budget_table

logger = logging.getLogger(__name__)


class BudgetCollector(Collector):
    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "spignos_budget_used_ratio",
            "Fraction of the budget spent in its current period",
            labels=["budget", "scope", "metric", "period"],
        )

    def describe(self) -> Any:
        yield self._family()

    def collect(self) -> Any:
        gauge = self._family()
        try:
            now = datetime.fromtimestamp(time.time(), UTC)
            table = budget_table.get()
            budgets = [
                b
                for group in (*table.by_key.values(), *table.by_team.values())
                for b in group
                if b.scope != Budget.Scope.USER or b.user_id
            ]
            pipe = cache_redis.sync_client().pipeline(transaction=False)
            for budget in budgets:
                pipe.hmget(charge_for(budget, user_id=budget.user_id, now=now).name, "spent", "seeded")
            for budget, (spent, seeded) in zip(budgets, pipe.execute(), strict=True):
                if seeded is not None:
                    labels = [str(budget.id), budget.scope, budget.metric, budget.period]
                    gauge.add_metric(labels, int(spent or 0) / budget.limit_micro)
        except Exception:
            logger.warning("budget gauges not read", exc_info=True)
        yield gauge
