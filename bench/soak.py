"""``python -m bench --soak``: a steady, realistic mix for minutes; memory of every server process over time.

The platform starts as for the benchmark (``Bench.setup``: fake upstream, uvicorn with 2 worker
processes, PostgreSQL, Redis) plus a Celery worker; locust (``bench/locustfile.py``, headless, a separate
process pinned like the benchmark's load generator) sends the mix at a constant rate. Every few seconds
the harness reads the resident memory (``VmRSS``) of each web process (uvicorn's supervisor and its
workers) and each Celery process (the main one and its pool), the connections they hold to PostgreSQL
and Redis, and how many requests were done so far.

Verdict: per role (web, worker), the growth is the median of the total over the last third of the run
minus its median just after the warm-up (the first 20 % of the run); more than ``GROWTH_MIB`` or
``GROWTH_SHARE`` of that baseline is a leak, and so is a slope that is still above ``TREND_MIB_PER_HOUR`` in
the last third, and ``GROWTH_CONNECTIONS`` more connections. Any
failed request, wrong answer or failed job, any error record in the servers' logs, and any server process
that died, was replaced or did not stop when asked, fails the soak too (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from . import harness, noise

# Growth of a role's memory after the warm-up that counts as a leak: either figure exceeded.
GROWTH_MIB = 20.0
GROWTH_SHARE = 0.10
# Connections to PostgreSQL or Redis held by all the server processes: more than this many more at the end.
GROWTH_CONNECTIONS = 10
# Still growing at the end, even under the limits above: the last third's slope (least squares) above
# this, with more than STILL_GROWING_MIB grown since the warm-up (one step of the allocator is not a
# trend). Judged on runs of MIN_TREND_S or more only: in a shorter one the last third can still be the
# end of the warm-up. A healthy web process here: under 15 MiB/hour in the last third of 10 minutes.
TREND_MIB_PER_HOUR = 30.0
STILL_GROWING_MIB = 2.0
MIN_TREND_S = 300.0  # make bench's 4-minute soak: the growth limits only (its last third is warm-up still)
WARMUP_SHARE = 0.20  # the first 20 % of the run: imports, caches, pools and allocator arenas filling
BASELINE_END_SHARE = 0.40  # the baseline: samples from the end of the warm-up up to 40 % of the run
FINAL_START_SHARE = 2 / 3  # the final level: samples in the last third
# The fake model: a short latency before it answers, 500 tokens/s when streaming (chunks one by one).
UPSTREAM_KNOBS = {"latency_ms": 20, "tps": 500}
MIB = 1024 * 1024
# Longer than any job should take, even on a busy machine; a job not done by then is an error.
JOB_TIMEOUT_S = 30.0


def rss_bytes(pid: int) -> int | None:
    """``VmRSS`` of a process from /proc (psutil elsewhere); None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0  # a zombie has no VmRSS line
    except FileNotFoundError:
        return None
    except OSError:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None


def role_pids(proc: harness.Proc, *, web: bool) -> list[int]:
    """The process and its children: uvicorn's supervisor and workers, or Celery's main process and pool."""
    if web:
        return [proc.pid, *harness.worker_pids(proc)]
    try:
        return [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.Error:
        return [proc.pid]


def sample_role(pids: list[int]) -> dict[str, int]:
    out = {}
    for pid in pids:
        rss = rss_bytes(pid)
        if rss is not None:
            out[str(pid)] = rss
    return out


def connections(pids: list[int], ports: dict[str, int]) -> dict[str, int]:
    """Open TCP connections of the processes to each named server port (PostgreSQL, Redis)."""
    counts = dict.fromkeys(ports, 0)
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        for conn in conns:
            if conn.raddr and conn.status == psutil.CONN_ESTABLISHED:
                for name, port in ports.items():
                    if conn.raddr.port == port:
                        counts[name] += 1
    return counts


def read_progress(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {"requests": 0, "failures": 0, "entries": []}


def median_between(samples: list[dict[str, Any]], key: str, start: float, end: float) -> float | None:
    """The median of one figure over the run's samples taken between ``start`` and ``end`` seconds."""
    values = [s[key] for s in samples if start <= s["t"] <= end and s["phase"] == "run"]
    return statistics.median(values) if values else None


def growth_verdict(samples: list[dict[str, Any]], role: str, duration: float) -> dict[str, Any]:
    """Median over the last third minus the median just after the warm-up, for one role's total."""
    key = f"{role}_mib"
    baseline = median_between(samples, key, WARMUP_SHARE * duration, BASELINE_END_SHARE * duration)
    final = median_between(samples, key, FINAL_START_SHARE * duration, float("inf"))
    if baseline is None or final is None:
        return {"baseline_mib": baseline, "final_mib": final, "growth_mib": None, "growth_share": None, "ok": None}
    growth = final - baseline
    share = growth / baseline if baseline else 0.0
    base_reqs = median_between(samples, "requests", WARMUP_SHARE * duration, BASELINE_END_SHARE * duration) or 0
    final_reqs = median_between(samples, "requests", FINAL_START_SHARE * duration, float("inf")) or 0
    requests = final_reqs - base_reqs
    middle = slope_per_hour(samples, key, BASELINE_END_SHARE * duration, FINAL_START_SHARE * duration)
    last = slope_per_hour(samples, key, FINAL_START_SHARE * duration, float("inf"))
    growing = None
    if duration >= MIN_TREND_S and middle is not None and last is not None:
        growing = last > TREND_MIB_PER_HOUR and growth > STILL_GROWING_MIB
    return {
        "baseline_mib": round(baseline, 1),
        "final_mib": round(final, 1),
        "growth_mib": round(growth, 1),
        "growth_share": round(share, 4),
        # Per 10,000 requests between the two windows' middles: a leak's size per request.
        "growth_kib_per_10k_requests": round(growth * 1024 / requests * 10_000, 1) if requests > 0 else None,
        "middle_trend_mib_per_hour": None if middle is None else round(middle, 1),
        "last_trend_mib_per_hour": None if last is None else round(last, 1),
        "still_growing": growing,
        "ok": growth <= GROWTH_MIB and share <= GROWTH_SHARE and not growing,
    }


def slope_per_hour(samples: list[dict[str, Any]], key: str, start: float, end: float) -> float | None:
    """Least-squares slope of one figure over the run's samples between two times, per hour."""
    points = [(s["t"], s[key]) for s in samples if start <= s["t"] <= end and s["phase"] == "run"]
    if len(points) < 4:
        return None
    slope, _ = statistics.linear_regression([p[0] for p in points], [p[1] for p in points])
    return slope * 3600


def connection_growth(samples: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    """Like the memory: connections held at the end of the run against those just after the warm-up."""
    out: dict[str, Any] = {}
    for name in ("postgres_conns", "redis_conns"):
        base = median_between(samples, name, WARMUP_SHARE * duration, BASELINE_END_SHARE * duration)
        final = median_between(samples, name, FINAL_START_SHARE * duration, float("inf"))
        growth = None if base is None or final is None else final - base
        out[name] = {
            "baseline": base,
            "final": final,
            "max": max((s[name] for s in samples), default=None),
            "ok": None if growth is None else growth <= GROWTH_CONNECTIONS,
        }
    return out


def server_log_errors(path: Path) -> int:
    """Records at ERROR or above in a server's log (JSON lines, or uvicorn's and Celery's plain ones)."""
    count = 0
    try:
        with path.open(errors="replace") as f:
            for line in f:
                if line.startswith(("ERROR", "CRITICAL", "[ERROR", "Traceback")) or any(
                    f'"level": "{level}"' in line for level in ("ERROR", "CRITICAL")
                ):
                    count += 1
    except OSError:
        return 0
    return count


class Soak:
    def __init__(self, args: argparse.Namespace, pinned: int | None, server_cpus: set[int] | None) -> None:
        from .run import Bench

        self.args = args
        self.duration = float(args.soak_seconds)
        self.interval = args.soak_sample or min(10.0, max(2.0, self.duration / 40))
        self.bench = Bench(args)
        self.bench.pinned = pinned
        self.bench.server_cpus = server_cpus
        self.samples: list[dict[str, Any]] = []
        self.pids_seen: dict[str, set[int]] = {"web": set(), "worker": set()}
        self.logs: dict[str, Path] = {}
        self.ports = {
            "postgres": urlsplit(self.bench.database_url).port or 5432,
            "redis": urlsplit(self.bench.redis_url).port or 6379,
        }

    # --- setup ---------------------------------------------------------------------------------------

    def setup(self) -> harness.Proc:
        bench = self.bench
        bench.setup()
        bench.configure_upstream(UPSTREAM_KNOBS)
        worker = bench._keep(
            harness.start_celery(self.args.soak_worker_concurrency, bench.env, bench.logs, bench.server_cpus)
        )
        print("waiting for the Celery worker to run a job...", flush=True)
        self.wait_for_worker(worker)
        return worker

    def wait_for_worker(self, worker: harness.Proc) -> None:
        from .run import JobWatcher

        request = urllib.request.Request(
            f"{self.bench.web_url}/api/v1/generate/async",
            data=json.dumps({"prompt": "warm up", "max_tokens": 8}).encode(),
            headers={**self.bench.auth(), "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            job_id = json.loads(response.read())["job_id"]
        jobs = JobWatcher(self.bench.database_url)
        try:
            if not asyncio.run(jobs.wait([job_id], timeout=120)):
                raise harness.SetupError(f"the Celery worker did not run a job:\n{worker.tail()}")
        finally:
            jobs.close()

    # --- the run -------------------------------------------------------------------------------------

    def start_locust(self, csv_prefix: Path, progress: Path) -> harness.Proc:
        args = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(harness.ROOT / "bench" / "locustfile.py"),
            "--headless",
            "--host",
            self.bench.web_url,
            "--users",
            str(self.args.soak_users),
            # Clients join over a few seconds, so their connections spread over the web processes.
            "--spawn-rate",
            str(max(1.0, self.args.soak_users / 5)),
            "--run-time",
            f"{int(self.duration)}s",
            # Tasks under way at the end may finish (a stuck job's is bounded by SOAK_JOB_TIMEOUT_S, then counted
            # as an error): one killed at this timeout would be an error nobody counts.
            "--stop-timeout",
            str(int(JOB_TIMEOUT_S + 15)),
            "--csv",
            str(csv_prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
        env = {
            **os.environ,
            "SOAK_API_KEY": self.bench.key,
            "SOAK_USERS": str(self.args.soak_users),
            "SOAK_TASKS_PER_S": str(self.args.soak_rate),
            "SOAK_PROGRESS_FILE": str(progress),
            "SOAK_JOB_TIMEOUT_S": str(JOB_TIMEOUT_S),
        }
        # No cpus: it inherits this process's pinning to the load generator's CPU.
        return harness.start("locust", args, env, self.bench.logs)

    def sample(self, started: float, web: harness.Proc, worker: harness.Proc, progress: Path) -> dict[str, Any]:
        web_pids, worker_pids = role_pids(web, web=True), role_pids(worker, web=False)
        web_rss, worker_rss = sample_role(web_pids), sample_role(worker_pids)
        # A connection leak shows here before it shows in memory (or as "too many clients").
        web_conns, worker_conns = connections(web_pids, self.ports), connections(worker_pids, self.ports)
        self.pids_seen["web"].update(int(p) for p in web_rss)
        self.pids_seen["worker"].update(int(p) for p in worker_rss)
        done = read_progress(progress)
        t = time.monotonic() - started
        row = {
            "t": round(t, 1),
            # After the run time locust only lets the tasks under way finish: not part of the verdict.
            "phase": "run" if t <= self.duration + 1 else "stopping",
            "requests": int(done.get("requests", 0)),
            "failures": int(done.get("failures", 0)),
            "web_mib": round(sum(web_rss.values()) / MIB, 1),
            "worker_mib": round(sum(worker_rss.values()) / MIB, 1),
            "web": {pid: round(v / MIB, 1) for pid, v in web_rss.items()},
            "worker": {pid: round(v / MIB, 1) for pid, v in worker_rss.items()},
            "postgres_conns": web_conns["postgres"] + worker_conns["postgres"],
            "redis_conns": web_conns["redis"] + worker_conns["redis"],
            "connections": {"web": web_conns, "worker": worker_conns},
        }
        self.samples.append(row)
        return row

    def run(self) -> dict[str, Any]:
        worker = self.setup()
        web = self.bench.web
        assert web is not None
        self.logs = {"web": web.log, "worker": worker.log}
        csv_prefix = self.bench.logs / "locust"
        progress = self.bench.logs / "locust-progress.json"
        expected = {"web": 1 + self.args.workers, "worker": 1 + self.args.soak_worker_concurrency}
        print(
            f"soak: {self.duration:.0f} s, {self.args.soak_users} clients at {self.args.soak_rate:g} tasks/s in "
            f"all; memory sampled every {self.interval:g} s",
            flush=True,
        )
        machine0 = noise.MachineSample.now()
        load0 = os.getloadavg()[0]
        ours0 = noise.cpu_seconds([web.pid, worker.pid])
        started = time.monotonic()
        locust = self.start_locust(csv_prefix, progress)
        self.sample(started, web, worker, progress)
        # locust stops by itself after the run time (and up to --stop-timeout for the tasks under way).
        deadline = started + self.duration + 90
        next_at = started + self.interval
        while time.monotonic() < deadline:
            try:
                locust.popen.wait(timeout=max(0.0, next_at - time.monotonic()))
                break
            except subprocess.TimeoutExpired:
                pass
            row = self.sample(started, web, worker, progress)
            print(
                f"  t={row['t']:6.0f} s  requests {row['requests']:7}  errors {row['failures']:3}  "
                f"web {row['web_mib']:7.1f} MiB  worker {row['worker_mib']:7.1f} MiB",
                flush=True,
            )
            next_at += self.interval
        if locust.alive():
            print("locust did not stop in time: stopping it", flush=True)
            locust.stop()
        self.sample(started, web, worker, progress)
        wall = time.monotonic() - started
        machine1 = noise.MachineSample.now()
        ours = noise.cpu_seconds([web.pid, worker.pid]) - ours0
        alive = {"web": web.alive(), "worker": worker.alive()}
        # A process that does not stop when asked has something stuck in it (a request, a task, a thread).
        clean = {"web": web.stop(), "worker": worker.stop()}
        self.bench.stop()
        return self.report(progress, locust, expected, alive, clean, machine0, machine1, load0, ours, wall)

    # --- the result ----------------------------------------------------------------------------------

    def report(
        self,
        progress: Path,
        locust: harness.Proc,
        expected: dict[str, int],
        alive: dict[str, bool],
        clean: dict[str, bool],
        machine0: noise.MachineSample,
        machine1: noise.MachineSample,
        load0: float,
        ours_cpu: float,
        wall: float,
    ) -> dict[str, Any]:
        # The locustfile's last progress file, written when locust quits: every request, including those
        # finished during --stop-timeout (its CSV files, kept beside the logs, are written before that).
        done = read_progress(progress)
        requests = int(done.get("requests", 0))
        errors = int(done.get("failures", 0)) + int(done.get("exceptions", 0))
        log_errors = {role: server_log_errors(log) for role, log in self.logs.items()}
        # A process that died, or one replaced by a new one (uvicorn restarts a dead worker), is a failure.
        restarted = {role: len(pids) - expected[role] for role, pids in self.pids_seen.items()}
        growth = {role: growth_verdict(self.samples, role, self.duration) for role in ("web", "worker")}
        conns = connection_growth(self.samples, self.duration)
        problems = []
        if errors:
            problems.append(f"{errors} errors")
        if locust.popen.returncode not in (0, 1):  # 1: locust's own exit status when a request failed
            problems.append(f"locust exited with status {locust.popen.returncode} (see {locust.log})")
        if requests == 0:
            problems.append("no request was sent")
        for name, count in log_errors.items():
            if count:
                problems.append(f"{count} error records in the {name} log")
        for role in ("web", "worker"):
            if not alive[role]:
                problems.append(f"the {role} process died")
            elif not clean[role]:
                problems.append(f"the {role} processes did not stop within 15 s of SIGTERM (see {self.logs[role]})")
            if restarted[role] > 0:
                problems.append(f"{restarted[role]} {role} process(es) replaced during the run")
            g = growth[role]
            if g["ok"] is False and g["still_growing"]:
                problems.append(
                    f"{role} memory still growing at the end ({g['last_trend_mib_per_hour']:+.0f} MiB/hour; "
                    f"{g['growth_mib']:+} MiB after the warm-up)"
                )
            elif g["ok"] is False:
                problems.append(f"{role} memory grew by {g['growth_mib']} MiB after the warm-up")
            elif growth[role]["ok"] is None:
                problems.append(f"too few {role} memory samples for a verdict (run longer)")
        for name, c in conns.items():
            if c["ok"] is False:
                problems.append(f"{name.split('_')[0]} connections grew from {c['baseline']} to {c['final']}")
        busy = noise.busy_cores(machine0, machine1)
        return {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": _git_commit(),
            "python": platform.python_version(),
            "host": platform.node(),
            "settings": {
                "seconds": self.duration,
                "users": self.args.soak_users,
                "tasks_per_s": self.args.soak_rate,
                "web_workers": self.args.workers,
                "worker_concurrency": self.args.soak_worker_concurrency,
                "sample_every_s": self.interval,
                "upstream": UPSTREAM_KNOBS,
                "thresholds": {
                    "growth_mib": GROWTH_MIB,
                    "growth_share": GROWTH_SHARE,
                    "growth_connections": GROWTH_CONNECTIONS,
                    "trend_mib_per_hour": TREND_MIB_PER_HOUR,
                    "still_growing_mib": STILL_GROWING_MIB,
                    "min_trend_s": MIN_TREND_S,
                    "warmup_share": WARMUP_SHARE,
                    "baseline_end_share": BASELINE_END_SHARE,
                    "final_start_share": FINAL_START_SHARE,
                },
            },
            "requests": requests,
            "errors": errors,
            "by_type": done.get("entries", []),
            "error_samples": done.get("errors", [])[:20],
            "exception_samples": done.get("exception_samples", [])[:10],
            "server_log_errors": log_errors,
            "rps": round(requests / wall, 1) if wall else None,
            "growth": growth,
            "connections": conns,
            "processes_seen": {role: sorted(pids) for role, pids in self.pids_seen.items()},
            "clean_shutdown": clean,
            "samples": self.samples,
            "machine": {
                "cpus": os.cpu_count(),
                "load_avg_start": round(load0, 2),
                "load_avg_end": round(os.getloadavg()[0], 2),
                "busy_cores": round(busy, 2),
                "server_cores": round(ours_cpu / wall, 2) if wall else None,
            },
            "problems": problems,
            "ok": not problems,
            "elapsed_s": round(wall, 1),
        }


def _git_commit() -> str:
    from .run import _git_commit as commit

    return commit()


def _rows_to_print(samples: list[dict[str, Any]], at_most: int = 21) -> list[dict[str, Any]]:
    if len(samples) <= at_most:
        return samples
    step = (len(samples) - 1) / (at_most - 1)
    return [samples[round(i * step)] for i in range(at_most)]


def print_report(result: dict[str, Any]) -> None:
    s = result["settings"]
    print()
    print(
        f"Soak: {s['seconds']:.0f} s, {s['users']} clients at {s['tasks_per_s']:g} tasks/s, "
        f"{s['web_workers']} web workers, Celery concurrency {s['worker_concurrency']}"
    )
    print()
    print("Memory (RSS, MiB): web = uvicorn supervisor + workers, worker = Celery main + pool processes;")
    print("pg / redis = connections the web + worker processes hold to PostgreSQL / Redis")
    head = (
        f"{'t (s)':>7} {'requests':>9} {'errors':>6} | {'web':>7}  {'per process':16} | {'worker':>7}  "
        f"{'per process':16} | {'pg':>7} {'redis':>7}"
    )
    print(head)
    print("-" * len(head))
    for row in _rows_to_print(result["samples"]):
        web = " ".join(f"{v:.0f}" for v in row["web"].values())
        worker = " ".join(f"{v:.0f}" for v in row["worker"].values())
        mark = " " if row["phase"] == "run" else "*"
        print(
            f"{row['t']:6.0f}{mark} {row['requests']:9} {row['failures']:6} | {row['web_mib']:7.1f}  {web:16} | "
            f"{row['worker_mib']:7.1f}  {worker:16} | {_split(row, 'postgres'):>7} {_split(row, 'redis'):>7}"
        )
    if any(row["phase"] != "run" for row in result["samples"]):
        print("* after the run time, while the tasks under way finished (not part of the verdict)")
    print()
    print(
        f"Growth after the warm-up (median of the last third - median from {WARMUP_SHARE:.0%} to "
        f"{BASELINE_END_SHARE:.0%} of the run; limit {GROWTH_MIB:g} MiB or {GROWTH_SHARE:.0%}), and the slope in the"
    )
    print(
        f"middle then the last third (a leak too: above {TREND_MIB_PER_HOUR:g} MiB/hour at the end with more than "
        f"{STILL_GROWING_MIB:g} MiB grown, judged on runs of {MIN_TREND_S:.0f} s or more):"
    )
    for role, g in result["growth"].items():
        if g["growth_mib"] is None:
            print(f"  {role:6}  not enough samples")
            continue
        per = g["growth_kib_per_10k_requests"]
        print(
            f"  {role:6}  {g['baseline_mib']:7.1f} -> {g['final_mib']:7.1f} MiB  growth {g['growth_mib']:+6.1f} MiB "
            f"({g['growth_share']:+.1%}"
            + (f", {per:+.0f} KiB per 10k requests" if per is not None else "")
            + f"); slope {_n(g['middle_trend_mib_per_hour'])} then {_n(g['last_trend_mib_per_hour'])} MiB/hour"
            + f"  {'ok' if g['ok'] else 'STILL GROWING' if g['still_growing'] else 'GREW'}"
        )
    c = result["connections"]
    print(
        f"  connections (median after the warm-up -> last third, max): PostgreSQL {_n(c['postgres_conns']['baseline'])}"
        f" -> {_n(c['postgres_conns']['final'])}, max {c['postgres_conns']['max']}; Redis "
        f"{_n(c['redis_conns']['baseline'])} -> {_n(c['redis_conns']['final'])}, max {c['redis_conns']['max']} "
        f"(limit +{GROWTH_CONNECTIONS})"
    )
    print()
    print(f"{'request type':28} {'requests':>9} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for r in result["by_type"]:
        print(f"{r['type'][:28]:28} {r['requests']:9} {r['failures']:6} {_ms(r['p50_ms']):>8} {_ms(r['p99_ms']):>8}")
    print(f"{'total':28} {result['requests']:9} {result['errors']:6}   ({result['rps']} requests/s)")
    for e in result["error_samples"][:5]:
        print(f"  error: {e['occurrences']}x {e['type']}: {e['error'][:160]}")
    for e in result["exception_samples"][:5]:
        print(f"  exception in the locustfile: {e['count']}x {e['message'][:160]}")
    logs = result["server_log_errors"]
    print(f"Error records in the server logs: {', '.join(f'{name} {n}' for name, n in logs.items())}")
    m = result["machine"]
    print()
    print(
        f"Machine: {m['cpus']} CPUs, load average {m['load_avg_start']} -> {m['load_avg_end']}; cores busy on "
        f"average {m['busy_cores']}, of which the web and worker processes {m['server_cores']}."
    )
    print()
    if result["ok"]:
        print(f"Soak: OK, errors: {result['errors']}, no memory growth beyond the warm-up.")
    else:
        print("Soak: FAILED: " + "; ".join(result["problems"]) + ".")


def _split(row: dict[str, Any], server: str) -> str:
    c = row["connections"]
    return f"{c['web'][server]}+{c['worker'][server]}"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def soak(args: argparse.Namespace, pinned: int | None, server_cpus: set[int] | None) -> int:
    """Run the soak, print its report, write its JSON; the exit status (0: no error, no growth)."""
    runner = Soak(args, pinned, server_cpus)
    try:
        result = runner.run()
    finally:
        runner.bench.stop()
    print_report(result)
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    path = harness.RESULTS / f"soak-{runner.bench.stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    (harness.RESULTS / "soak-latest.json").write_text(json.dumps(result, indent=2))
    print(f"\nresults: {path.relative_to(harness.ROOT)} (logs: {runner.bench.logs.relative_to(harness.ROOT)})")
    return 0 if result["ok"] else 1
