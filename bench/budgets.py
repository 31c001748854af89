"""``python -m bench.budgets``: the web CPU the budget check adds to a request (issue 16: under 0.2 ms).

In one process, no servers: a key of a team, under three budgets (the key's USD, the team's Wh, the end
user's gCO2e), against the same key without budgets. Process CPU per request (``time.process_time``, every
thread), best of ``--rounds``, 1 and 50 requests at a time on the event loop:

* costs — finding the budgets in force and accounting the most the call can cost on two models (in memory);
* admit — the admission's Lua step with its three budget counters, against the step without them;
* settle — the booking's reconcile with the three budgets (and the soft-threshold check), against without.

Needs ``DATABASE_URL`` (migrated: a team, a key and three budgets are created, then deleted) and
``REDIS_URL``. A shared machine makes these figures noisy: compare the columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def _cpu_per_op(run: Callable[[], None], ops: int, rounds: int) -> float:
    """Microseconds of process CPU per operation, best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        run()
        best = min(best, (time.process_time() - start) / ops * 1e6)
    return best


def _on_loop(make: Callable[[], Awaitable[Any]], ops: int, parallel: int) -> Callable[[], None]:
    async def batch() -> None:
        for _ in range(ops // parallel):
            await asyncio.gather(*(make() for _ in range(parallel)))

    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(batch())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.budgets")
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spignosapi.settings")
    import django

    django.setup()
    from accounts.models import Team
    from accounts.selectors import KeyInfo
    from accounts.services import apikey_create
    from budgets.counters import Spend, charge_for
    from budgets.models import Budget
    from budgets.selectors import budget_table
    from routing.budgeting import budget_costs
    from routing.limits import BudgetCost, admit_key, settle_tokens
    from routing.selectors import ModelInfo
    from spignosapi.fastpath.redis_client import cache_redis

    team = Team.objects.create(name=f"bench-{os.getpid()}")
    key, _ = apikey_create(name="bench", rpm_limit=10**9, tpm_limit=2 * 10**9, team=team)
    big = Decimal(10**9)
    Budget.objects.create(scope="key", metric="usd", period="month", limit=big, api_key=key)
    Budget.objects.create(scope="team", metric="wh", period="day", limit=big, team=team)
    Budget.objects.create(scope="user", metric="co2e_g", period="total", limit=big, api_key=key)
    try:
        info = KeyInfo(key.pk, key.name, False, 10**9, 2 * 10**9, None, None, None, key.hashed_key, team.pk)
        table = budget_table.get(recheck=True)
        models = [
            ModelInfo(1, "demo/a", "demo", "a", 8192, 0.5, 1.5, 0.2, None, None, False),
            ModelInfo(2, "demo/b", "demo", "b", 8192, 3.0, 15.0, 0.9, None, None, False),
        ]

        def costs() -> list[BudgetCost]:
            return budget_costs(table, info, user_id="u1", models=models, prompt_tokens=40, completion_tokens=64)

        budgets = costs()
        assert len(budgets) == 3
        # Seeded and caught up, as they are after a period's first call: the step never asks for a rebuild.
        client = cache_redis.sync_client()
        now = time.time()
        for cost in budgets:
            name = charge_for(cost.budget, user_id=cost.user_id, now=datetime.now(UTC)).name
            client.hset(name, mapping={"seeded": int(now * 1000), "caught_up": 1, "catchup_at": now})

        async def admitted(with_budgets: bool) -> None:
            done = await admit_key(info, prompt_tokens=40, max_tokens=64, budgets=budgets if with_budgets else ())
            await settle_tokens(done.reservation, 80, Spend(0.0001, 0.01, 0.004) if with_budgets else Spend())

        print(f"{'µs CPU per request':<44}{'without':>10}{'with 3':>10}{'added':>10}")

        def many_costs() -> None:
            for _ in range(args.ops):
                costs()

        per = _cpu_per_op(many_costs, args.ops, args.rounds)
        print(f"{'costs (budgets in force, most a call costs)':<44}{0:>10.1f}{per:>10.1f}{per:>10.1f}")
        for parallel in (1, 50):
            ops = args.ops // parallel * parallel
            without = _cpu_per_op(_on_loop(lambda: admitted(False), ops, parallel), ops, args.rounds)
            with_ = _cpu_per_op(_on_loop(lambda: admitted(True), ops, parallel), ops, args.rounds)
            label = f"admit + settle, {parallel} at a time"
            print(f"{label:<44}{without:>10.1f}{with_:>10.1f}{with_ - without:>10.1f}")
    finally:
        Budget.objects.filter(api_key=key).delete()
        Budget.objects.filter(team=team).delete()
        key.delete()
        team.delete()


if __name__ == "__main__":
    main(sys.argv[1:])
