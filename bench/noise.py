"""How busy the machine is, and how much CPU the benchmark's own processes use.

Latency on a shared machine is only as good as the core the process got. So every measurement comes
with: the CPU time of the processes under test (which contention barely changes, hence the steady
"CPU ms per request" figure), the machine-wide CPU time from ``/proc/stat`` (what is left once ours is
subtracted is somebody else's), the load average, and a calibration loop that measures the share of
a core this process actually gets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

# Other processes using more than this many cores during a measurement make it "noisy".
FOREIGN_CORES_WARN = 0.25
# The calibration loop getting less than this share of its core means the core is contended.
CORE_SHARE_WARN = 0.9


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the processes (and their children) named by ``pids``."""
    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


def self_cpu_seconds() -> float:
    return time.process_time()


@dataclass(frozen=True)
class MachineSample:
    """Machine-wide CPU jiffies (busy, total) from /proc/stat, with the time they were read."""

    at: float
    busy: float
    total: float
    steal: float

    @classmethod
    def now(cls) -> MachineSample:
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
        except OSError:  # not Linux: machine-wide figures are unavailable
            return cls(time.perf_counter(), 0.0, 0.0, 0.0)
        hz = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        # guest time is already counted in user; steal is time a hypervisor gave to someone else.
        total = sum(fields[:8])
        steal = fields[7] if len(fields) > 7 else 0.0
        return cls(time.perf_counter(), (total - idle - steal) / hz, total / hz, steal / hz)


def busy_cores(start: MachineSample, end: MachineSample) -> float:
    """Average number of cores busy between the two samples (0 when unavailable)."""
    wall = end.at - start.at
    return (end.busy - start.busy) / wall if wall > 0 and end.total else 0.0


def steal_cores(start: MachineSample, end: MachineSample) -> float:
    wall = end.at - start.at
    return (end.steal - start.steal) / wall if wall > 0 and end.total else 0.0


def calibrate(rounds: int = 5, work: int = 400_000) -> dict[str, float]:
    """Run a fixed pure-Python loop ``rounds`` times: its speed, and the share of a core it got.

    ``core_share`` = CPU time / wall time of the loop: 1.0 on an idle core, 0.5 when another process
    takes half of it. ``loops_per_s`` (best round) compares machines, or one machine over time.
    """
    shares = []
    best = float("inf")
    for _ in range(rounds):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        x = 0
        for i in range(work):
            x += i * i % 7
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        best = min(best, wall)
        shares.append(cpu / wall if wall > 0 else 1.0)
    shares.sort()
    return {
        "core_share": round(shares[len(shares) // 2], 3),
        "loops_per_s": round(work / best),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def available_cpus() -> set[int]:
    if not hasattr(os, "sched_getaffinity"):
        return set(range(os.cpu_count() or 1))
    return set(os.sched_getaffinity(0))


def pin_to_last_core() -> int | None:
    """Pin this process to the last CPU when there are several; returns that CPU (None if not pinned).

    Processes started afterwards inherit the pinning: give them ``server_cpus()`` explicitly.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(available_cpus())
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(0, {cpus[-1]})
    return cpus[-1]


def server_cpus(available: set[int], pinned: int | None) -> set[int]:
    """The CPUs for the servers: all but the load generator's when there are enough (4 or more), else
    every CPU (on 2 or 3 cores the servers need them all)."""
    others = available - ({pinned} if pinned is not None else set())
    return others if len(others) >= 3 else set(available)
