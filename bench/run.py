"""``make bench``: the same requests sent straight to the fake upstream and through the platform.

Prints, per mode (JSON, SSE) and concurrency (1, 20, 50): requests/s, p50/p95/p99 latency, the
latency the gateway adds, the gateway/direct throughput ratio, and the web processes' CPU milliseconds
per request; then the async jobs (acceptance latency, end-to-end latency through a Celery worker), the
targets, and how noisy the machine was. JSON results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from . import harness, noise
from .load import Cell, run_cell, summary

PROMPT = "Say hello to the benchmark"
MAX_TOKENS = 64
CONCURRENCIES = (1, 20, 50)
# Calibration speeds differing by more than this between cells: the host itself is busy.
SPEED_SPREAD_WARN = 0.15

TARGETS = {
    "cpu_ms_per_request": ("CPU per proxied request (ms)", 1.5, "max"),
    "added_p50_c1": ("added latency c=1 p50 (ms)", 1.5, "max"),
    "added_p99_c1": ("added latency c=1 p99 (ms)", 5.0, "max"),
    "rps_c50": ("non-streaming req/s at c=50", 800.0, "min"),
    "errors_c50": ("errors at c=50", 0.0, "max"),
    "added_ttft_p50_c1": ("added time to first token c=1 p50 (ms)", 2.0, "max"),
    "async_accept_p50": ("async acceptance p50 (ms)", 10.0, "max"),
    "async_accept_p99": ("async acceptance p99 (ms)", 30.0, "max"),
}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.database_url = os.environ.get("BENCH_DATABASE_URL") or harness.DEFAULT_DATABASE_URL
        self.redis_url = os.environ.get("BENCH_REDIS_URL") or harness.DEFAULT_REDIS_URL
        self.stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.logs = harness.RESULTS / "logs" / self.stamp
        self.procs: list[harness.Proc] = []
        self.cells: list[dict[str, Any]] = []
        self.pinned: int | None = None
        self.server_cpus: set[int] | None = None
        self.key = ""
        self.upstream: harness.Proc | None = None
        self.web: harness.Proc | None = None
        self.upstream_url = ""
        self.web_url = ""
        self.env: dict[str, str] = {}

    # --- setup ---------------------------------------------------------------------------------------

    def setup(self) -> None:
        print(f"database {self.database_url}  redis {self.redis_url}", flush=True)
        harness.check_postgres(self.database_url)
        harness.check_and_flush_redis(self.redis_url)
        upstream_port = harness.free_port()
        self.upstream_url = f"http://127.0.0.1:{upstream_port}"
        self.env = harness.platform_env(
            database_url=self.database_url, redis_url=self.redis_url, upstream_url=f"{self.upstream_url}/v1"
        )
        self.upstream = self._keep(harness.start_upstream(upstream_port, self.env, self.logs, self.server_cpus))
        print("preparing the database (migrate, seed, key)...", flush=True)
        self.key = harness.run_setup(self.env)
        self.start_web(self.args.workers)

    def start_web(self, workers: int) -> None:
        if self.web is not None:
            self.web.stop()
            self.procs.remove(self.web)
        port = harness.free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        self.web = self._keep(harness.start_web(port, workers, self.env, self.logs, self.server_cpus))

    def _keep(self, proc: harness.Proc) -> harness.Proc:
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def configure_upstream(self, knobs: dict[str, Any] | None) -> None:
        if knobs:
            harness.http_json("POST", f"{self.upstream_url}/_fake/models", {"*": knobs})
        else:
            harness.http_json("DELETE", f"{self.upstream_url}/_fake/models")

    # --- requests ------------------------------------------------------------------------------------

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def chat_body(self, model: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    # --- measuring -----------------------------------------------------------------------------------

    async def measure(
        self, label: dict[str, Any], load: Callable[[], Awaitable[Cell]], *, gateway_pids: list[int]
    ) -> dict[str, Any]:
        """Run one load cell and record it with the CPU used by each party and by everyone else."""
        assert self.upstream is not None
        # The machine's speed right now (the servers are idle): a host that slows down shows here.
        speed = noise.calibrate(rounds=3, work=200_000)["loops_per_s"]
        up_pids = [self.upstream.pid]
        gw0, up0, me0 = noise.cpu_seconds(gateway_pids), noise.cpu_seconds(up_pids), noise.self_cpu_seconds()
        workers = harness.worker_pids(self.web) if gateway_pids and self.web is not None else []
        per_worker0 = [noise.cpu_seconds([pid]) for pid in workers]
        redis0 = harness.redis_cpu_seconds(self.redis_url)
        machine0 = noise.MachineSample.now()
        cell = await load()
        machine1 = noise.MachineSample.now()
        gw = noise.cpu_seconds(gateway_pids) - gw0
        per_worker = [noise.cpu_seconds([pid]) - c0 for pid, c0 in zip(workers, per_worker0, strict=True)]
        up = noise.cpu_seconds(up_pids) - up0
        me = noise.self_cpu_seconds() - me0
        rd = harness.redis_cpu_seconds(self.redis_url) - redis0
        wall = machine1.at - machine0.at
        busy = noise.busy_cores(machine0, machine1)
        ours = (gw + up + me + rd) / wall if wall > 0 else 0.0
        n = max(cell.requests, 1)
        result = {
            **label,
            "requests": cell.requests,
            "errors": cell.errors,
            "error_samples": cell.error_samples,
            "rps": round(cell.rps, 1),
            "latency_ms": summary(cell.latencies_ms),
            "ttft_ms": summary(cell.ttft_ms) if cell.ttft_ms else None,
            "cpu_ms_per_request": {
                "gateway": round(gw * 1000 / n, 3) if gateway_pids else None,
                "upstream": round(up * 1000 / n, 3),
                "loadgen": round(me * 1000 / n, 3),
                "redis": round(rd * 1000 / n, 3),
            },
            "gateway_cores": round(gw / wall, 2) if wall > 0 else None,
            # How evenly the web processes shared the work (each keeps the connections it accepted).
            "worker_cores": [round(c / wall, 2) for c in per_worker] if wall > 0 else [],
            "busy_cores": round(busy, 2),
            "foreign_cores": round(max(0.0, busy - ours), 2),
            "steal_cores": round(noise.steal_cores(machine0, machine1), 2),
            "speed_loops_per_s": speed,
        }
        self.cells.append(result)
        return result

    async def cell(self, scenario: str, target: str, concurrency: int, stream: bool) -> dict[str, Any]:
        assert self.web is not None
        if target == "direct":
            url, body, headers, pids = (
                f"{self.upstream_url}/v1/chat/completions",
                self.chat_body("demo-fast", stream),
                {},
                [],
            )
        elif scenario == "generate":
            body = {"prompt": PROMPT, "max_tokens": MAX_TOKENS, "stream": stream}
            url, headers, pids = f"{self.web_url}/api/v1/generate", self.auth(), [self.web.pid]
        else:
            url, body, headers, pids = (
                f"{self.web_url}/v1/chat/completions",
                self.chat_body("auto", stream),
                self.auth(),
                [self.web.pid],
            )
        label = {
            "scenario": scenario,
            "mode": "stream" if stream else "json",
            "target": target,
            "concurrency": concurrency,
        }

        def load() -> Awaitable[Cell]:
            return run_cell(
                url,
                body,
                headers=headers,
                concurrency=concurrency,
                duration_s=self.args.duration,
                stream=stream,
                warmup_s=self.args.warmup,
            )

        result = await self.measure(label, load, gateway_pids=pids)
        lat = result["latency_ms"]
        cpu = result["cpu_ms_per_request"]["gateway"]
        print(
            f"  {scenario:8} {label['mode']:6} {target:7} c={concurrency:<3} {result['rps']:8.1f} req/s  "
            f"p50 {_f(lat['p50'])}  p99 {_f(lat['p99'])} ms  errors {result['errors']}"
            + (f"  gateway CPU {cpu:.3f} ms/req" if cpu is not None else "")
            + f"  other cores {result['foreign_cores']:.2f}",
            flush=True,
        )
        return result

    async def sync_phase(self) -> None:
        print("warming up the gateway...", flush=True)
        await run_cell(
            f"{self.web_url}/v1/chat/completions",
            self.chat_body("auto", False),
            headers=self.auth(),
            concurrency=20,
            duration_s=2.0,
            warmup_s=0,
        )
        for stream in (False, True):
            # Streams are paced (tokens per second) so chunks travel one by one, as from a real model.
            self.configure_upstream({"tps": self.args.stream_tps} if stream else None)
            for concurrency in CONCURRENCIES:
                await self.cell("chat", "direct", concurrency, stream)
                await self.cell("chat", "gateway", concurrency, stream)
            for concurrency in (1, 50):
                await self.cell("generate", "gateway", concurrency, stream)
        self.configure_upstream(None)

    # --- async jobs ----------------------------------------------------------------------------------

    async def async_phase(self, concurrency: int = 2) -> dict[str, Any]:
        import aiohttp

        assert self.web is not None
        worker = self._keep(harness.start_celery(concurrency, self.env, self.logs, self.server_cpus))
        url = f"{self.web_url}/api/v1/generate/async"
        body = json.dumps({"prompt": PROMPT, "max_tokens": MAX_TOKENS}).encode()
        headers = {**self.auth(), "Content-Type": "application/json"}
        jobs = JobWatcher(self.database_url)
        try:
            async with aiohttp.ClientSession() as session:

                async def submit() -> tuple[float, str]:
                    started = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as response:
                        payload = await response.json()
                        if response.status != 202:
                            raise RuntimeError(f"HTTP {response.status}: {payload}")
                    return (time.perf_counter() - started) * 1000, str(payload["job_id"])

                print("async jobs: waiting for the worker...", flush=True)
                _, first = await submit()
                if not await jobs.wait([first], timeout=120):
                    raise harness.SetupError(f"the Celery worker did not run a job:\n{worker.tail()}")
                # Acceptance: one client submitting back to back while the worker runs the queue.
                web0, wk0 = noise.cpu_seconds([self.web.pid]), noise.cpu_seconds([worker.pid])
                machine0 = noise.MachineSample.now()
                accept: list[float] = []
                ids: list[str] = []
                for _ in range(self.args.jobs):
                    ms, job_id = await submit()
                    accept.append(ms)
                    ids.append(job_id)
                accept_wall = time.perf_counter() - machine0.at
                web_cpu = noise.cpu_seconds([self.web.pid]) - web0
                drained = await jobs.wait(ids, timeout=300)
                machine1 = noise.MachineSample.now()
                worker_cpu = noise.cpu_seconds([worker.pid]) - wk0
                span = jobs.span(ids)
                # End to end, one job at a time: submit, then watch the database for its end.
                e2e_client: list[float] = []
                sequential: list[str] = []
                for _ in range(self.args.e2e_jobs):
                    started = time.perf_counter()
                    _, job_id = await submit()
                    await jobs.wait([job_id], timeout=60, interval=0.002)
                    e2e_client.append((time.perf_counter() - started) * 1000)
                    sequential.append(job_id)
                e2e_server = jobs.durations_ms(sequential)
                failed = jobs.failed(ids + sequential)
        finally:
            jobs.close()
            worker.stop()
            self.procs.remove(worker)
        accept_ms, e2e_ms_server = summary(accept), summary(e2e_server)
        result = {
            "worker_concurrency": concurrency,
            "accepted": len(accept),
            "accept_ms": accept_ms,
            "accept_rps": round(len(accept) / accept_wall, 1) if accept_wall else None,
            "web_cpu_ms_per_accept": round(web_cpu * 1000 / max(len(accept), 1), 3),
            "drained": drained,
            "failed_jobs": failed,
            "jobs_per_s": round(len(ids) / span, 1) if span else None,
            "worker_cpu_ms_per_job": round(worker_cpu * 1000 / max(len(ids), 1), 3),
            "e2e_ms_server": e2e_ms_server,
            "e2e_ms_client": summary(e2e_client),
            "foreign_cores": round(
                max(0.0, noise.busy_cores(machine0, machine1) - (web_cpu + worker_cpu) / (machine1.at - machine0.at)),
                2,
            ),
        }
        print(
            f"  async: accept p50 {_f(accept_ms['p50'])} p99 {_f(accept_ms['p99'])} ms, "
            f"end-to-end p50 {_f(e2e_ms_server['p50'])} ms, {result['jobs_per_s']} jobs/s, "
            f"failed {failed}",
            flush=True,
        )
        return result

    # --- sizing --------------------------------------------------------------------------------------

    async def sizing_phase(self) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        for workers in self.args.sizing_web:
            self.start_web(workers)
            assert self.web is not None
            await run_cell(
                f"{self.web_url}/v1/chat/completions",
                self.chat_body("auto", False),
                headers=self.auth(),
                concurrency=20,
                duration_s=1.0,
                warmup_s=0,
            )
            result = await self.cell("sizing", "gateway", 50, False)
            # Re-label: the chat endpoint at c=50 with this many web processes.
            result["scenario"] = f"sizing-web-{workers}"
            result["web_workers"] = workers
            rows.append(result)
        self.start_web(self.args.workers)
        workers_rows = []
        for concurrency in self.args.sizing_celery:
            workers_rows.append(await self.async_phase(concurrency))
        return {"web": rows, "celery": workers_rows}


class JobWatcher:
    """Reads job rows straight from PostgreSQL, so watching jobs puts no load on the web server."""

    def __init__(self, database_url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(database_url, autocommit=True)

    async def wait(self, ids: list[str], *, timeout: float, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.conn.execute(
                "SELECT count(*) FROM jobs_job WHERE id = ANY(%s::uuid[]) AND finished_at IS NOT NULL", [ids]
            ).fetchone()
            if row is not None and row[0] == len(ids):
                return True
            await asyncio.sleep(interval)
        return False

    def span(self, ids: list[str]) -> float:
        row = self.conn.execute(
            "SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM jobs_job WHERE id = ANY(%s::uuid[])",
            [ids],
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    def durations_ms(self, ids: list[str]) -> list[float]:
        rows = self.conn.execute(
            "SELECT extract(epoch FROM finished_at - created_at) * 1000 FROM jobs_job "
            "WHERE id = ANY(%s::uuid[]) AND finished_at IS NOT NULL",
            [ids],
        ).fetchall()
        return [float(r[0]) for r in rows]

    def failed(self, ids: list[str]) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM jobs_job WHERE id = ANY(%s::uuid[]) AND status <> 'succeeded'", [ids]
        ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


# --- report ----------------------------------------------------------------------------------------------


def _f(value: float | None, width: int = 7, digits: int = 2) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else " " * (width - 1) + "-"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def comparisons(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gateway cells beside the direct cell of the same mode and concurrency."""
    direct = {(c["mode"], c["concurrency"]): c for c in cells if c["target"] == "direct"}
    rows = []
    for gw in cells:
        if gw["target"] != "gateway" or gw["scenario"].startswith("sizing"):
            continue
        d = direct.get((gw["mode"], gw["concurrency"]))
        if d is None:
            continue
        row = {
            "endpoint": "/v1/chat/completions" if gw["scenario"] == "chat" else "/api/v1/generate",
            "mode": gw["mode"],
            "concurrency": gw["concurrency"],
            "direct_rps": d["rps"],
            "gateway_rps": gw["rps"],
            "ratio": round(gw["rps"] / d["rps"], 3) if d["rps"] else None,
            "direct_ms": d["latency_ms"],
            "gateway_ms": gw["latency_ms"],
            "added_ms": {q: _round(_diff(gw["latency_ms"][q], d["latency_ms"][q])) for q in ("p50", "p95", "p99")},
            "errors": gw["errors"],
            "direct_errors": d["errors"],
            "cpu_ms_per_request": gw["cpu_ms_per_request"]["gateway"],
            "foreign_cores": max(gw["foreign_cores"], d["foreign_cores"]),
        }
        if gw["ttft_ms"] and d["ttft_ms"]:
            row["direct_ttft_ms"] = d["ttft_ms"]
            row["gateway_ttft_ms"] = gw["ttft_ms"]
            row["added_ttft_ms"] = {q: _round(_diff(gw["ttft_ms"][q], d["ttft_ms"][q])) for q in ("p50", "p95", "p99")}
        rows.append(row)
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def targets(rows: list[dict[str, Any]], jobs: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    def row(endpoint: str, mode: str, concurrency: int) -> dict[str, Any] | None:
        return next(
            (r for r in rows if r["endpoint"] == endpoint and r["mode"] == mode and r["concurrency"] == concurrency),
            None,
        )

    chat = "/v1/chat/completions"
    c1, c50, s1 = row(chat, "json", 1), row(chat, "json", 50), row(chat, "stream", 1)
    values: dict[str, float | None] = {
        "cpu_ms_per_request": c50["cpu_ms_per_request"] if c50 else None,
        "added_p50_c1": c1["added_ms"]["p50"] if c1 else None,
        "added_p99_c1": c1["added_ms"]["p99"] if c1 else None,
        "rps_c50": c50["gateway_rps"] if c50 else None,
        "errors_c50": float(c50["errors"]) if c50 else None,
        "added_ttft_p50_c1": s1["added_ttft_ms"]["p50"] if s1 and "added_ttft_ms" in s1 else None,
        "async_accept_p50": jobs["accept_ms"]["p50"] if jobs else None,
        "async_accept_p99": jobs["accept_ms"]["p99"] if jobs else None,
    }
    out = {}
    for name, (text, limit, kind) in TARGETS.items():
        value = values[name]
        met = None if value is None else (value <= limit if kind == "max" else value >= limit)
        out[name] = {"what": text, "value": _round(value), "target": limit, "kind": kind, "met": met}
    return out


def print_report(result: dict[str, Any]) -> None:
    rows = result["comparisons"]
    print()
    print("Latency in ms; added = gateway - direct (same percentile); ratio = gateway req/s / direct req/s;")
    print("CPU = CPU time of the web processes / requests; other = cores used by other processes meanwhile.")
    head = (
        f"{'endpoint':20} {'mode':6} {'c':>3} | {'direct/s':>8} {'p50':>7} {'p99':>7} | {'gateway/s':>9} "
        f"{'p50':>7} {'p95':>7} {'p99':>7} | {'added p50':>9} {'p95':>7} {'p99':>7} | {'ratio':>5} "
        f"{'err':>4} {'CPU ms':>6} {'other':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        d, g, a = r["direct_ms"], r["gateway_ms"], r["added_ms"]
        print(
            f"{r['endpoint']:20} {r['mode']:6} {r['concurrency']:>3} | {r['direct_rps']:8.1f} {_f(d['p50'])} "
            f"{_f(d['p99'])} | {r['gateway_rps']:9.1f} {_f(g['p50'])} {_f(g['p95'])} {_f(g['p99'])} | "
            f"{_f(a['p50'], 9)} {_f(a['p95'])} {_f(a['p99'])} | {_f(r['ratio'], 5)} {r['errors']:>4} "
            f"{_f(r['cpu_ms_per_request'], 6, 3)} {r['foreign_cores']:5.2f}"
        )
    streams = [r for r in rows if "added_ttft_ms" in r]
    if streams:
        print()
        print(
            f"{'time to first token':20} {'mode':6} {'c':>3} | {'direct p50':>10} {'p99':>7} | "
            f"{'gateway p50':>11} {'p99':>7} | {'added p50':>9} {'p95':>7} {'p99':>7}"
        )
        for r in streams:
            d, g, a = r["direct_ttft_ms"], r["gateway_ttft_ms"], r["added_ttft_ms"]
            print(
                f"{r['endpoint']:20} {r['mode']:6} {r['concurrency']:>3} | {_f(d['p50'], 10)} {_f(d['p99'])} | "
                f"{_f(g['p50'], 11)} {_f(g['p99'])} | {_f(a['p50'], 9)} {_f(a['p95'])} {_f(a['p99'])}"
            )
    jobs = result.get("async_jobs")
    if jobs:
        print()
        acc, e2e, cli = jobs["accept_ms"], jobs["e2e_ms_server"], jobs["e2e_ms_client"]
        print(
            f"POST /api/v1/generate/async (c=1, {jobs['accepted']} jobs, worker concurrency "
            f"{jobs['worker_concurrency']}): accepted in p50 {_f(acc['p50'], 0)} p95 {_f(acc['p95'], 0)} "
            f"p99 {_f(acc['p99'], 0)} ms ({jobs['web_cpu_ms_per_accept']:.2f} ms web CPU each)"
        )
        print(
            f"  end to end through the worker, one at a time: p50 {_f(e2e['p50'], 0)} p95 {_f(e2e['p95'], 0)} "
            f"p99 {_f(e2e['p99'], 0)} ms (created -> finished; client-observed p50 {_f(cli['p50'], 0)} ms)"
        )
        print(
            f"  queue drained at {jobs['jobs_per_s']} jobs/s ({jobs['worker_cpu_ms_per_job']:.1f} ms worker CPU "
            f"per job); failed jobs: {jobs['failed_jobs']}"
        )
    sizing = result.get("sizing")
    if sizing:
        print()
        print("Sizing (this machine):")
        for r in sizing["web"]:
            print(
                f"  web workers {r['web_workers']}: {r['rps']:.0f} req/s at c=50 (p50 {_f(r['latency_ms']['p50'], 0)}"
                f" p99 {_f(r['latency_ms']['p99'], 0)} ms, {r['gateway_cores']} cores, errors {r['errors']})"
            )
        for j in sizing["celery"]:
            print(
                f"  celery concurrency {j['worker_concurrency']}: {j['jobs_per_s']} jobs/s "
                f"(end-to-end p50 {_f(j['e2e_ms_server']['p50'], 0)} ms)"
            )
    print()
    print("Targets:")
    for t in result["targets"].values():
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        op = "<=" if t["kind"] == "max" else ">="
        print(f"  {t['what']:42} {_f(t['value'], 9)}   target {op} {t['target']:<7} {mark}")
    print()
    n = result["noise"]
    print(
        f"Machine: {n['cpus']} CPUs, load generator pinned to CPU {n['pinned_cpu']}; load average at start "
        f"{n['load_avg_start']}, calibration core share {n['calibration_start']['core_share']} -> "
        f"{n['calibration_end']['core_share']}, other processes used up to {n['max_foreign_cores']} cores, "
        f"speed spread between measurements {n['speed_spread']:.0%}."
    )
    for warning in n["warnings"]:
        print(f"WARNING: {warning}")
    if not n["warnings"]:
        print("The machine was quiet: latencies are representative.")


def noise_report(
    cells: list[dict[str, Any]], start: dict[str, float], end: dict[str, float], load_start: float, pinned: int | None
) -> dict[str, Any]:
    foreign = max((c["foreign_cores"] for c in cells), default=0.0)
    steal = max((c["steal_cores"] for c in cells), default=0.0)
    speeds = [c["speed_loops_per_s"] for c in cells if c.get("speed_loops_per_s")]
    speed_spread = (max(speeds) / min(speeds) - 1) if speeds else 0.0
    warnings = []
    if load_start > 1.0:
        warnings.append(f"load average was {load_start:.2f} before the benchmark started anything.")
    if foreign > noise.FOREIGN_CORES_WARN:
        noisy = sorted(
            {
                f"{c['scenario']}/{c['mode']}/{c['target']}/c={c['concurrency']}"
                for c in cells
                if c["foreign_cores"] > noise.FOREIGN_CORES_WARN
            }
        )
        warnings.append(
            f"other processes used up to {foreign:.2f} cores during measurements ({len(noisy)} cells): latency and "
            "throughput are pessimistic; CPU ms per request is the steady figure."
        )
    for name, cal in (("start", start), ("end", end)):
        if cal["core_share"] < noise.CORE_SHARE_WARN:
            warnings.append(f"the calibration loop got {cal['core_share']:.0%} of its core at the {name}.")
    if steal > 0.05:
        warnings.append(f"the hypervisor took up to {steal:.2f} cores (steal time).")
    if speed_spread > SPEED_SPREAD_WARN:
        warnings.append(
            f"the machine's speed varied by {speed_spread:.0%} between measurements (a calibration loop run "
            "before each): the host is shared and busy; compare figures from one run only."
        )
    return {
        "cpus": os.cpu_count(),
        "pinned_cpu": pinned,
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "calibration_start": start,
        "calibration_end": end,
        "max_foreign_cores": round(foreign, 2),
        "max_steal_cores": round(steal, 2),
        "speed_spread": round(speed_spread, 3),
        "warnings": warnings,
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=harness.ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=harness.ROOT, capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return ""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("BENCH_WEB_WORKERS", "2")),
        help="uvicorn worker processes (default 2)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds before each measurement")
    parser.add_argument("--stream-tps", type=float, default=500.0, help="the fake model's tokens/s when streaming")
    parser.add_argument("--jobs", type=int, default=200, help="async jobs submitted back to back")
    parser.add_argument("--e2e-jobs", type=int, default=40, help="async jobs timed end to end, one at a time")
    parser.add_argument("--quick", action="store_true", help="short measurements (a smoke run)")
    parser.add_argument("--no-async", action="store_true", help="skip the async-job measurements")
    parser.add_argument("--sizing", action="store_true", help="also measure 1/2/4 web workers and worker concurrency")
    parser.add_argument("--sizing-web", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--sizing-celery", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--profile", action="store_true", help="profile one web worker with py-spy under load instead of benchmarking"
    )
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--profile-concurrency", type=int, default=20, help="clients of the chat endpoint")
    parser.add_argument(
        "--profile-modes", nargs="+", default=["json", "stream", "async"], choices=["json", "stream", "async"]
    )
    soak = parser.add_argument_group("soak (bench/README.md, Soak)")
    soak.add_argument(
        "--soak", action="store_true", help="run the soak (a steady mix, memory over time) instead of benchmarking"
    )
    soak.add_argument(
        "--soak-seconds",
        type=float,
        default=float(os.environ.get("SOAK_SECONDS") or 600),
        help="length of the soak (default $SOAK_SECONDS or 600)",
    )
    soak.add_argument("--soak-rate", type=float, default=30.0, help="tasks per second over all clients (default 30)")
    soak.add_argument("--soak-users", type=int, default=20, help="simulated clients (default 20)")
    soak.add_argument("--soak-worker-concurrency", type=int, default=2, help="Celery worker processes (default 2)")
    soak.add_argument("--soak-sample", type=float, default=0.0, help="seconds between memory samples (default: auto)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.jobs, args.e2e_jobs = 2.0, 0.3, 60, 15
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    bench = Bench(args)
    load_start = os.getloadavg()[0]
    available = noise.available_cpus()
    bench.pinned = noise.pin_to_last_core()
    bench.server_cpus = noise.server_cpus(available, bench.pinned)
    if args.soak:
        from .soak import soak

        sys.exit(soak(args, bench.pinned, bench.server_cpus))
    print(f"calibrating (load average {load_start:.2f})...", flush=True)
    calibration_start = noise.calibrate()
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        loop_factory = None
    started = time.monotonic()
    try:
        if args.profile:
            from .profile import profile

            args.workers = 1
            bench.setup()
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(profile(bench))
            return
        bench.setup()
        result: dict[str, Any] = {}

        async def everything() -> None:
            await bench.sync_phase()
            if not args.no_async:
                result["async_jobs"] = await bench.async_phase()
            if args.sizing:
                result["sizing"] = await bench.sizing_phase()

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(everything())
    finally:
        bench.stop()
    calibration_end = noise.calibrate()
    rows = comparisons(bench.cells)
    result.update(
        {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": _git_commit(),
            "python": platform.python_version(),
            "machine": platform.node(),
            "settings": {k: v for k, v in vars(args).items()},
            "comparisons": rows,
            "cells": bench.cells,
            "targets": targets(rows, result.get("async_jobs")),
            "noise": noise_report(bench.cells, calibration_start, calibration_end, load_start, bench.pinned),
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    )
    print_report(result)
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    path = harness.RESULTS / f"bench-{bench.stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    (harness.RESULTS / "latest.json").write_text(json.dumps(result, indent=2))
    print(f"\nresults: {path.relative_to(harness.ROOT)} (server logs: {bench.logs.relative_to(harness.ROOT)})")


if __name__ == "__main__":
    main(sys.argv[1:])
