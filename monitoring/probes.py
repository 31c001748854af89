"""One probe: a single streaming request with a short fixed prompt, timed with an injectable clock.

``probe_all`` runs the probes of one refresh concurrently, at most ``concurrency`` at a time. Nothing here
touches the database: the outcomes are plain data that ``monitoring.services`` stores. The request goes
straight to the model through the ``llm`` handler (no routing, breaker, limits or usage records), once,
without retries, so a probe measures the model and nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from llm import LLMError, LLMHandler, RetryPolicy
from llm.types import GenerationResult, compute_timings

from .models import Bucket

SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Upper bounds in seconds: smooth is strictly below ``smooth``; the others include their bound."""

    smooth: float
    available: float
    congestion: float
    lagging: float

    @classmethod
    def from_settings(cls) -> Thresholds:
        from django.conf import settings

        return cls(
            smooth=settings.MONITORING_SMOOTH_MAX_S,
            available=settings.MONITORING_AVAILABLE_MAX_S,
            congestion=settings.MONITORING_CONGESTION_MAX_S,
            lagging=settings.MONITORING_LAGGING_MAX_S,
        )


def classify(*, ok: bool, total_ms: float | None, thresholds: Thresholds) -> str:
    """The bucket of a probe from its total time; any error (or no time) is unknown."""
    if not ok or total_ms is None:
        return Bucket.UNKNOWN
    seconds = total_ms / 1000.0
    if seconds < thresholds.smooth:
        return Bucket.SMOOTH
    if seconds <= thresholds.available:
        return Bucket.AVAILABLE
    if seconds <= thresholds.congestion:
        return Bucket.CONGESTION
    if seconds <= thresholds.lagging:
        return Bucket.LAGGING
    return Bucket.UNKNOWN


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one probe measured. Times are null when not measured (never 0); errors keep code and status."""

    model_id: str
    checked_at: datetime
    ok: bool
    http_status: int | None
    error_type: str
    error: str
    ttfb_ms: float | None
    total_ms: float | None
    tokens_per_sec: float | None
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    prompt: str
    max_tokens: int
    timeout_s: float


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


async def probe_one(
    handler: LLMHandler,
    model_id: str,
    spec: ProbeSpec,
    *,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = timezone.now,
) -> Outcome:
    """Stream one short answer from ``model_id``; every failure becomes an error outcome, never an exception."""
    checked_at = now()
    start = clock()
    first_token_at: float | None = None
    result: GenerationResult | None = None
    try:
        events = handler.astream(
            model_id,
            prompt=spec.prompt,
            temperature=0.0,
            max_tokens=spec.max_tokens,
            timeout_s=spec.timeout_s,
            retry=SINGLE_ATTEMPT,
        )
        async with aclosing(events):
            async for event in events:
                if event.type == "delta" and first_token_at is None and (event.content or event.tool_calls):
                    first_token_at = clock()
                elif event.type == "done":
                    result = event.result
    except LLMError as error:
        return _failure(model_id, checked_at, start, clock(), error.code, str(error), error.status_code)
    except Exception as error:  # a probe must always be recorded, whatever broke
        return _failure(model_id, checked_at, start, clock(), "probe_error", f"{type(error).__name__}: {error}", None)
    end = clock()
    if result is None:
        return _failure(model_id, checked_at, start, end, "invalid_response", "the stream ended without a result", 200)
    usage = result.usage
    timings = compute_timings(start, first_token_at, end, usage.completion_tokens)
    return Outcome(
        model_id=model_id,
        checked_at=checked_at,
        ok=True,
        http_status=200,
        error_type="",
        error="",
        ttfb_ms=_round(timings.ttft_ms, 1),
        total_ms=_round(timings.total_ms, 1),
        tokens_per_sec=_round(timings.tokens_per_sec, 2),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )


def _failure(
    model_id: str, checked_at: datetime, start: float, end: float, code: str, message: str, status: int | None
) -> Outcome:
    return Outcome(
        model_id=model_id,
        checked_at=checked_at,
        ok=False,
        http_status=status,
        error_type=code,
        error=message[:500],
        ttfb_ms=None,
        total_ms=round((end - start) * 1000.0, 1),
        tokens_per_sec=None,
        prompt_tokens=None,
        completion_tokens=None,
    )


async def probe_all(
    handler: LLMHandler,
    model_ids: Sequence[str],
    spec: ProbeSpec,
    *,
    concurrency: int,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = timezone.now,
) -> list[Outcome]:
    """Probe every model, at most ``concurrency`` at once; outcomes in the order of ``model_ids``."""
    gate = asyncio.Semaphore(concurrency)

    async def bounded(model_id: str) -> Outcome:
        async with gate:
            return await probe_one(handler, model_id, spec, clock=clock, now=now)

    return list(await asyncio.gather(*(bounded(model_id) for model_id in model_ids)))
