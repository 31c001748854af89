"""One probe: a single streaming request with a short fixed prompt, timed with an injectable clock.

Besides the plain answer, a model marked as supporting them is probed the way its users use it: a forced
call of a known tool (valid when it calls that tool with arguments that parse as a JSON object) and an
answer in a JSON schema (valid when it parses and validates against the schema). A call that succeeds
with an invalid answer is a failed probe of error type ``invalid_answer``.

``probe_all`` runs the probes of one refresh concurrently, at most ``concurrency`` at a time. Nothing here
touches the database: the outcomes are plain data that ``monitoring.services`` stores. The request goes
straight to the model through the ``llm`` handler (no routing, breaker, limits or usage records), once,
without retries, so a probe measures the model and nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema
from django.utils import timezone

from llm import LLMError, LLMHandler, RetryPolicy
from llm.types import GenerationResult, compute_timings

from .models import Bucket, ProbeKind

SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)

# The tool the tool-call probe offers and forces.
PROBE_TOOL_NAME = "record_greeting"
PROBE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": PROBE_TOOL_NAME,
        "description": "Record a short greeting.",
        "parameters": {
            "type": "object",
            "properties": {"greeting": {"type": "string"}},
            "required": ["greeting"],
            "additionalProperties": False,
        },
    },
}
# The schema the structured-output probe asks for (strict, as OpenAI requires it then).
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"greeting": {"type": "string"}, "language": {"type": "string", "enum": ["en", "fr", "de"]}},
    "required": ["greeting", "language"],
    "additionalProperties": False,
}
# A JSON answer or a tool call's arguments need more room than a plain greeting: a cut answer is invalid.
ANSWER_MAX_TOKENS = 200


def _request(kind: str, spec: ProbeSpec) -> dict[str, Any]:
    """The arguments of the probe's request beyond the prompt, by kind."""
    if kind == ProbeKind.TOOL_CALL:
        return {
            "max_tokens": spec.answer_max_tokens,
            "tools": [PROBE_TOOL],
            "tool_choice": {"type": "function", "function": {"name": PROBE_TOOL_NAME}},
        }
    if kind == ProbeKind.STRUCTURED_OUTPUT:
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "greeting", "strict": True, "schema": PROBE_SCHEMA},
        }
        return {
            "max_tokens": spec.answer_max_tokens,
            "params": {"response_format": response_format},
        }
    return {"max_tokens": spec.max_tokens}


def invalid_answer(kind: str, result: GenerationResult) -> str | None:
    """Why the answer does not do what the probe asked; None when it does (a plain answer always does)."""
    if kind == ProbeKind.TOOL_CALL:
        calls = [call for call in result.tool_calls if call.name == PROBE_TOOL_NAME]
        if not calls:
            named = ", ".join(call.name for call in result.tool_calls) or "none"
            return f"no call of the forced tool {PROBE_TOOL_NAME} (tools called: {named})"
        try:
            arguments = json.loads(calls[0].arguments)
        except ValueError as error:
            return f"the tool call's arguments are not JSON: {error}"
        return None if isinstance(arguments, dict) else "the tool call's arguments are not a JSON object"
    if kind == ProbeKind.STRUCTURED_OUTPUT:
        try:
            answer = json.loads(result.text)
        except ValueError as error:
            return f"the answer is not JSON: {error}"
        try:
            jsonschema.validate(answer, PROBE_SCHEMA)
        except jsonschema.ValidationError as error:
            return f"the answer does not match the schema: {error.message}"
    return None


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
    kind: str
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
    answer_max_tokens: int = ANSWER_MAX_TOKENS  # the tool-call and structured-output probes'


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


async def probe_one(
    handler: LLMHandler,
    model_id: str,
    spec: ProbeSpec,
    *,
    kind: str = ProbeKind.STREAM,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = timezone.now,
) -> Outcome:
    """Stream one short answer of ``kind`` from ``model_id``; every failure (an invalid answer too) becomes
    an error outcome, never an exception."""
    checked_at = now()
    start = clock()
    first_token_at: float | None = None
    result: GenerationResult | None = None
    failed = functools.partial(_failure, model_id, kind, checked_at, start)
    try:
        events = handler.astream(
            model_id,
            prompt=spec.prompt,
            temperature=0.0,
            timeout_s=spec.timeout_s,
            retry=SINGLE_ATTEMPT,
            **_request(kind, spec),
        )
        async with aclosing(events):
            async for event in events:
                if event.type == "delta" and first_token_at is None and (event.content or event.tool_calls):
                    first_token_at = clock()
                elif event.type == "done":
                    result = event.result
    except LLMError as error:
        return failed(clock(), error.code, str(error), error.status_code)
    except Exception as error:  # a probe must always be recorded, whatever broke
        return failed(clock(), "probe_error", f"{type(error).__name__}: {error}", None)
    end = clock()
    if result is None:
        return failed(end, "invalid_response", "the stream ended without a result", 200)
    why = invalid_answer(kind, result)
    if why is not None:
        return failed(end, "invalid_answer", why, 200)
    usage = result.usage
    timings = compute_timings(start, first_token_at, end, usage.completion_tokens)
    return Outcome(
        model_id=model_id,
        kind=kind,
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
    model_id: str,
    kind: str,
    checked_at: datetime,
    start: float,
    end: float,
    code: str,
    message: str,
    status: int | None,
) -> Outcome:
    return Outcome(
        model_id=model_id,
        kind=kind,
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
    targets: Sequence[tuple[str, str]],
    spec: ProbeSpec,
    *,
    concurrency: int,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = timezone.now,
) -> list[Outcome]:
    """Run every (model id, kind) probe, at most ``concurrency`` at once; outcomes in the order of ``targets``."""
    gate = asyncio.Semaphore(concurrency)

    async def bounded(model_id: str, kind: str) -> Outcome:
        async with gate:
            return await probe_one(handler, model_id, spec, kind=kind, clock=clock, now=now)

    return list(await asyncio.gather(*(bounded(model_id, kind) for model_id, kind in targets)))
