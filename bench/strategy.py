"""``python -m bench.strategy``: what ordering a chain by a category's strategy adds to a request.

In one process, no servers, no I/O: ``routing.strategy.rank`` as the gateway calls it (``_by_strategy``: the
current time, then the ranking) over a chain of ``--models`` models from an in-memory snapshot, for each
strategy, CPU time per request (``time.process_time``), best of ``--rounds``. The latency figures are the
snapshot's value as the gateway reads it while fresh (no Redis check: that happens at most once per
``SNAPSHOT_CHECK_SECONDS`` per process, for every request at once).

Needs Django's settings (``DATABASE_URL`` and ``REDIS_URL`` as for the tests), though nothing is read from
either. The goal: well under 0.05 ms (50 µs) per request.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", type=int, default=5, help="models in the chain (default 5)")
    parser.add_argument("--ops", type=int, default=20_000, help="requests per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is kept (default 5)")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spignosapi.settings")
    import django

    django.setup()
    from ledger.coefficients import Coefficient, EnergyProfile, Range
    from routing.selectors import LatencyFigure, ModelInfo
    from routing.strategy import Freshness, rank

    now = datetime.now(UTC)
    chain = tuple(f"provider{i % 3}/model-{i}" for i in range(args.models))
    models = {
        model_id: ModelInfo(
            pk=i,
            model_id=model_id,
            provider=model_id.partition("/")[0],
            name=model_id.partition("/")[2],
            context_window=128_000,
            price_in_per_m=0.1 * (args.models - i),
            price_out_per_m=0.4 * (i + 1),
            energy_kwh_per_m=None,
            rpm_budget=None,
            tpm_budget=None,
            monitor=True,
            # Two versions each, one of them not valid yet: the lookup a real profile makes.
            energy=EnergyProfile(
                (
                    (
                        Coefficient(output=Range.single(0.05 * (i + 1))),
                        Coefficient(output=Range.single(0.01), valid_from=now + timedelta(days=30)),
                    ),
                )
            ),
            grid_gco2e_per_kwh=50.0 * (i + 1),
            pue=1.1,
        )
        for i, model_id in enumerate(chain)
    }
    # One model without figures and one stale, so the fallback is measured too.
    latency = {
        model_id: LatencyFigure(300.0 + 50 * i, 40, now - timedelta(seconds=3600 if i == 1 else 60))
        for i, model_id in enumerate(chain[:-1])
    }
    freshness = Freshness(max_age_s=900, min_samples=5)

    print(f"rank() per request, chain of {args.models} models, best of {args.rounds} x {args.ops}:")
    for strategy in ("ordered", "latency", "cost", "carbon"):
        best = float("inf")
        for _ in range(args.rounds):
            start = time.process_time()
            for _ in range(args.ops):
                rank(
                    strategy,
                    chain,
                    models,
                    prompt_tokens=1200,
                    completion_tokens=256,
                    now=datetime.now(UTC),
                    latency=latency,
                    freshness=freshness,
                )
            best = min(best, (time.process_time() - start) / args.ops * 1e6)
        print(f"  {strategy:8} {best:6.2f} µs")


if __name__ == "__main__":
    main()
