"""Benchmark of GET /api/v1/energy/summary on a million usage rows, against PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/energy_summary.py [--rows 1000000] [--repeat 5] [--keep]

Creates a scratch database next to the one DATABASE_URL names (the server must let that user CREATE
DATABASE), migrates it, bulk-inserts the usage rows in SQL (90 days, 20 keys, 500 end users, 12 models of
4 providers), builds the daily roll-ups, then times the summary for each group_by through the whole Django
stack (auth, view, JSON) with a staff key and with a normal key, over all time and over a 30-day window
whose edges fall mid-day (roll-ups for the whole days, records for the part-days). Prints a table and drops
the scratch database (unless --keep). It also times the production write path: usage records written in
batches of 500 with their roll-ups.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INSERT_SQL = """
SELECT setseed(0.42);
INSERT INTO routing_usagerecord (
    request_id, api_key_id, user_id, endpoint, category, route_mode, model, provider, attempts, status, error_code,
    stream, prompt_tokens, completion_tokens, ttft_ms, latency_ms, cost_usd, energy_wh, co2e_g, energy_kwh_per_m,
    energy_input_kwh_per_m, energy_coefficient_id, energy_estimated, energy_wh_low, energy_wh_high, co2e_g_low,
    co2e_g_high, grid_g_co2e_per_kwh, created_at)
SELECT 'bench-' || g, k.id, 'user-' || (g % 500), 'generate', 'conversation', 'keywords',
       'prov' || (g % 4) || '/model-' || (g % 12), 'prov' || (g % 4), '[]'::jsonb, 'ok', '',
       false, t.p, t.c, 120, 900, round((t.p * 0.5 + t.c * 2.0) / 1e6, 8),
       t.c * (g % 12 + 1) * 1e-4, t.c * (g % 12 + 1) * 1e-4 * 0.475, (g % 12 + 1) * 0.1,
       NULL, NULL, (g % 5 = 0), t.c * (g % 12 + 1) * 0.6e-4, t.c * (g % 12 + 1) * 1.6e-4,
       t.c * (g % 12 + 1) * 0.6e-4 * 0.475, t.c * (g % 12 + 1) * 1.6e-4 * 0.475, 475,
       now() - make_interval(secs => random() * 90 * 86400)
FROM generate_series(1, {rows}) AS g
CROSS JOIN LATERAL (SELECT (random() * 2000)::int AS p, (random() * 500)::int AS c) AS t
JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM accounts_apikey) AS k ON k.n = (g % 20);
ANALYZE routing_usagerecord;
"""


def scratch_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + name))


def admin_connection(base: str) -> Any:
    import psycopg

    return psycopg.connect(scratch_url(base, "postgres"), autocommit=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per case (after one warm-up)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not base.startswith("postgres"):
        print("DATABASE_URL must name a PostgreSQL server", file=sys.stderr)
        return 2
    name = f"spignosapi_bench_energy_{os.getpid()}"
    with admin_connection(base) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    print(f"scratch database {name}")
    try:
        return run(scratch_url(base, name), args)
    finally:
        if args.keep:
            print(f"kept {name}")
        else:
            from django.db import connections

            connections.close_all()
            with admin_connection(base) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped {name}")


def run(url: str, args: argparse.Namespace) -> int:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spignosapi.settings")
    import django

    django.setup()
    from datetime import UTC, datetime, timedelta

    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from accounts.services import apikey_create
    from energy.selectors import GROUP_BYS, energy_summary
    from ledger.models import UsageRecord
    from ledger.rollups import usage_rollups_rebuild
    from ledger.writer import usage_records_create

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"migrated in {time.perf_counter() - started:.1f} s")

    keys = [apikey_create(name=f"bench key {i}", is_staff=(i == 0)) for i in range(20)]
    staff_raw, normal_raw = keys[0][1], keys[1][1]

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(INSERT_SQL.replace("{rows}", str(int(args.rows))))
    print(f"inserted {UsageRecord.objects.count():,} usage rows in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    by_model, by_user = usage_rollups_rebuild()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE energy_usagedaily; ANALYZE energy_usagedailybyuser;")
    print(f"roll-ups: {by_model:,} rows by model, {by_user:,} by user, built in {time.perf_counter() - started:.1f} s")

    # The production write path: batches of 500 records, each followed by its roll-up update.
    now = datetime.now(UTC)
    batch = [
        UsageRecord(
            request_id=f"live-{i}",
            api_key_id=keys[i % 20][0].pk,
            user_id=f"user-{i % 500}",
            endpoint="generate",
            model=f"prov{i % 4}/model-{i % 12}",
            provider=f"prov{i % 4}",
            prompt_tokens=100,
            completion_tokens=50,
            energy_wh=0.01,
            created_at=now,
        )
        for i in range(10_000)
    ]
    started = time.perf_counter()
    for i in range(0, len(batch), 500):
        usage_records_create(batch[i : i + 500])
    elapsed = time.perf_counter() - started
    print(f"write path: {len(batch):,} records with roll-ups in {elapsed:.2f} s ({len(batch) / elapsed:,.0f}/s)")

    client = Client()
    since = (now - timedelta(days=30)).replace(hour=13, minute=37).isoformat()
    until = (now - timedelta(days=1)).replace(hour=9, minute=15).isoformat()
    cases = [("all time", {}), ("30 days, part-day edges", {"since": since, "until": until})]
    print()
    print(f"{'group_by':<9} {'range':<25} {'who':<7} {'rows':>6} {'median ms':>10} {'max ms':>8} {'selector ms':>12}")
    worst = 0.0
    for group_by in GROUP_BYS:
        for label, params in cases:
            for who, raw, key_ids in (("staff", staff_raw, None), ("key", normal_raw, [keys[1][0].pk])):
                query = {"group_by": group_by, **params}
                headers = {"Authorization": f"Bearer {raw}"}
                reply = client.get("/api/v1/energy/summary", query, headers=headers)  # warm-up
                assert reply.status_code == 200, reply.content
                timings = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    reply = client.get("/api/v1/energy/summary", query, headers=headers)
                    timings.append(time.perf_counter() - t0)
                    assert reply.status_code == 200
                t0 = time.perf_counter()
                energy_summary(
                    group_by=group_by,
                    since=datetime.fromisoformat(params["since"]) if params else None,
                    until=datetime.fromisoformat(params["until"]) if params else None,
                    key_ids=key_ids,
                )
                selector = time.perf_counter() - t0
                worst = max(worst, max(timings))
                rows = len(reply.json()["rows"])
                print(
                    f"{group_by:<9} {label:<25} {who:<7} {rows:>6} {ms(statistics.median(timings)):>10} "
                    f"{ms(max(timings)):>8} {ms(selector):>12}"
                )
    print(f"\nslowest summary call: {worst * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
