"""The load generator: N concurrent aiohttp clients sending one request in a loop for a fixed time.

aiohttp costs a fraction of a millisecond of CPU per request (httpx costs several), so one pinned
process outruns the gateway. Each client keeps its connection alive, as an SDK's pool does.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# A stream's first token: the first chunk whose delta carries non-empty content.
_FIRST_TOKEN = re.compile(rb'"content":"[^"]')
# A complete answer: a chat completion, a /api/v1/generate answer, an accepted async job.
_ANSWER_KEYS = (b'"choices"', b'"output"', b'"job_id"')


@dataclass
class Cell:
    """One measurement: every latency (ms), every time to first token (ms, streams), errors."""

    requests: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict[str, float | None]:
    return {f"p{q}": _round(percentile(values, q)) for q in (50, 95, 99)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str], stream: bool, cell: Cell
) -> None:
    started = time.perf_counter()
    first: float | None = None
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if stream:
                tail = b""
                async for data in response.content.iter_any():
                    if first is None and _FIRST_TOKEN.search(tail + data):
                        first = time.perf_counter()
                    tail = (tail + data)[-2048:]
                # The OpenAI format ends with [DONE]; /api/v1/generate with its "complete" event.
                finished = tail.rstrip().endswith(b"[DONE]") or b'"type":"complete"' in tail
                ok = response.status == 200 and finished and first is not None
            else:
                payload = await response.read()
                ok = response.status in (200, 202) and any(k in payload for k in _ANSWER_KEYS)
            if not ok:
                raise RuntimeError(f"HTTP {response.status}")
    except Exception as exc:  # counted, never fatal: an error rate is a result
        cell.errors += 1
        if len(cell.error_samples) < 5:
            cell.error_samples.append(f"{type(exc).__name__}: {exc}"[:200])
        return
    ended = time.perf_counter()
    cell.requests += 1
    cell.latencies_ms.append((ended - started) * 1000)
    if first is not None:
        cell.ttft_ms.append((first - started) * 1000)


async def run_cell(
    url: str,
    body: Mapping[str, Any] | bytes,
    *,
    headers: Mapping[str, str] | None = None,
    concurrency: int,
    duration_s: float,
    stream: bool = False,
    warmup_s: float = 0.5,
    max_requests: int | None = None,
) -> Cell:
    """Send ``body`` to ``url`` from ``concurrency`` clients for ``duration_s`` (after a warm-up)."""
    import json

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, enable_cleanup_closed=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)) as s:
        if warmup_s > 0:
            # Clients join one by one during the warm-up, as they would over time: opened in one burst,
            # every connection would land on whichever web process woke first (asyncio accepts greedily),
            # and stay there.
            await _loop(s, url, raw, all_headers, concurrency, warmup_s, stream, Cell(), None, ramp_s=warmup_s * 0.8)
        cell = Cell()
        started = time.perf_counter()
        await _loop(s, url, raw, all_headers, concurrency, duration_s, stream, cell, max_requests)
        cell.wall_s = time.perf_counter() - started
    return cell


async def _loop(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    concurrency: int,
    duration_s: float,
    stream: bool,
    cell: Cell,
    max_requests: int | None,
    ramp_s: float = 0.0,
) -> None:
    deadline = time.perf_counter() + duration_s

    async def client(index: int) -> None:
        if ramp_s:
            await asyncio.sleep(ramp_s * index / concurrency)
        while time.perf_counter() < deadline:
            if max_requests is not None and cell.requests + cell.errors >= max_requests:
                return
            await _one(session, url, body, headers, stream, cell)

    await asyncio.gather(*(client(i) for i in range(concurrency)))
