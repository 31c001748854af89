"""The synchronous gateway path: limit, route, walk the chain behind its breakers, account, answer.

``prepare()`` runs the request's database- and Redis-bound steps in one worker thread (auth has already
happened); ``generate()`` and ``stream()`` then call models on the event loop, falling back along the
chain on retryable errors (a stream only while no token has been sent), and ``finish()`` books usage off
the request path.

Admission reserves the most the call can use on the key's tokens/minute; ``finish()`` settles that
reservation with what the call used, whatever its outcome (a call that never reaches ``finish()`` holds
its reservation until the minute ends).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from accounts.selectors import KeyInfo
from llm import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    GenerationResult,
    LLMError,
    LLMTimeoutError,
    NotFoundError,
    StreamEvent,
    Timings,
    Usage,
    count_message_tokens,
    count_tokens,
)
from spignosapi.api.errors import ApiError, InvalidRequest, ServiceUnavailable, UpstreamFailed, UpstreamTimeout

from . import breaker, limits, metrics, quota, spans
from .accounting import account
from .breaker import BreakerState, default_breakers
from .engine import SINGLE_ATTEMPT, handler_for
from .router import Route, choose_route, classifier_prompt, explicit_route, parse_category_answer, routing_text
from .selectors import RoutingConfig, routing_config
from .semantic import semantic_category
from .usage import usage_buffer

_budgets = limits.OutboundBudgets()


@dataclass
class Call:
    """One gateway request, validated. ``key`` is None for a dashboard user's (session) async job."""

    key: KeyInfo | None
    request_id: str
    endpoint: str
    messages: list[dict[str, Any]]
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user_id: str = ""
    model: str | None = None
    category: str | None = None
    route_mode: str | None = None
    stream: bool = False
    # The key's tokens reservation when the call was admitted elsewhere (an async job, at submission).
    reservation: quota.Reservation | None = None


@dataclass
class Prepared:
    call: Call
    config: RoutingConfig
    route: Route
    states: dict[int, BreakerState]
    prompt_tokens: int
    started: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    reservation: quota.Reservation | None = None  # settled (and cleared) by finish()
    # Admitted by the request itself, in a server: finish() need not wait for the settle (see below).
    settle_in_background: bool = False


def admit(call: Call, http_request: Any) -> quota.Reservation | None:
    """The key's limits for this call (RPM, caps, a TPM reservation); returns the reservation, which the
    run of the call settles (``Call.reservation``).

    For a call routed later (an async job): a model or category it names must exist now (else 404).
    """
    if call.key is None:
        explicit_route(routing_config.get(), model=call.model, category=call.category)
        return None
    prompt_tokens = count_message_tokens(call.messages)
    reservation = limits.admit_key_sync(call.key, prompt_tokens=prompt_tokens, max_tokens=call.max_tokens)
    try:
        explicit_route(routing_config.get(), model=call.model, category=call.category)
    except BaseException:
        limits.settle_tokens_sync(reservation, 0)
        raise
    return reservation


async def aadmit(call: Call) -> quota.Reservation | None:
    """``admit`` on the event loop: the key's limits in one Redis round trip."""
    if call.key is None:
        explicit_route(await routing_config.aget(), model=call.model, category=call.category)
        return None
    prompt_tokens = count_message_tokens(call.messages)
    admitted = await limits.admit_key(call.key, prompt_tokens=prompt_tokens, max_tokens=call.max_tokens)
    try:
        explicit_route(await routing_config.aget(), model=call.model, category=call.category)
    except BaseException:
        await limits.settle_tokens(admitted.reservation, 0)
        raise
    return admitted.reservation


async def _config() -> RoutingConfig:
    # In memory; a thread (for Redis and maybe the database) only when it is time to look for changes.
    return await routing_config.aget()


async def prepare(call: Call, http_request: Any | None) -> Prepared:
    """Limits (unless ``http_request`` is None: already admitted), route, and the chain's breaker states.

    The limits come first: a request they refuse is refused whatever its route. When the route needs no
    classifier it is computed first anyway (it is pure), so that the limits and the chain's breaker
    states take one round trip to Redis; its errors are raised after the limits, as before.
    """
    started = time.perf_counter()
    config = await _config()
    prompt_tokens = count_message_tokens(call.messages)
    admit = http_request is not None and call.key is not None
    mode = call.route_mode or settings.ROUTING_MODE

    async def classify(text: str, names: Sequence[str]) -> str | None:
        return await _classify(config, text, names)

    async def similar(text: str) -> str | None:
        return await semantic_category(config, text)

    async def route_of() -> Route:
        with spans.routing(call, mode) as traced:
            route = await choose_route(
                config,
                text=routing_text(call.messages),
                model=call.model,
                category=call.category,
                has_tools=bool(call.tools),
                mode=mode,
                default_category=settings.ROUTING_DEFAULT_CATEGORY,
                classify=classify,
                similar=similar,
            )
            traced.chosen(route)
        return route

    if not admit or mode in ("llm", "hybrid", "semantic"):
        reservation = call.reservation
        if admit:
            assert call.key is not None
            admitted = await limits.admit_key(call.key, prompt_tokens=prompt_tokens, max_tokens=call.max_tokens)
            reservation = admitted.reservation
        try:
            route = await route_of()
            states = await breaker.states_for(config, route.chain)
        except BaseException:  # no call will be made: nothing was used
            if admit:
                await limits.settle_tokens(reservation, 0)
            raise
        return Prepared(
            call, config, route, states, prompt_tokens, started, reservation=reservation, settle_in_background=admit
        )

    assert call.key is not None
    route_error: Exception | None = None
    keys: list[str] = []
    try:
        route = await route_of()
        keys = breaker.cache_keys(config, route.chain)
    except Exception as exc:
        route_error = exc
    admitted = await limits.admit_key(call.key, prompt_tokens=prompt_tokens, max_tokens=call.max_tokens, read=keys)
    try:
        if route_error is not None:
            raise route_error
        states = await breaker.states_for(config, route.chain, admitted.reads)
    except BaseException:
        await limits.settle_tokens(admitted.reservation, 0)
        raise
    return Prepared(
        call, config, route, states, prompt_tokens, started, reservation=admitted.reservation, settle_in_background=True
    )


async def _classify(config: RoutingConfig, text: str, names: Sequence[str]) -> str | None:
    model = settings.ROUTING_CLASSIFIER_MODEL
    if model not in config.models:
        return None
    handler = handler_for(config.providers)
    result = await handler.agenerate(
        model,
        classifier_prompt(text, names),
        temperature=0.0,
        max_tokens=8,
        timeout_s=settings.ROUTING_CLASSIFIER_TIMEOUT_S,
        retry=SINGLE_ATTEMPT,
    )
    return parse_category_answer(result.text, names)


def _call_kwargs(call: Call) -> dict[str, Any]:
    return {
        "temperature": call.temperature,
        "top_p": call.top_p,
        "max_tokens": call.max_tokens,
        "stop": call.stop,
        "tools": call.tools,
        "tool_choice": call.tool_choice,
        "user": call.user_id or None,
        "retry": SINGLE_ATTEMPT,
    }


async def _admit(prepared: Prepared, model_id: str) -> tuple[bool, str | None]:
    """(may we call this model, why not). Claims a half-open trial or an outbound budget as needed."""
    info = prepared.config.models.get(model_id)
    if info is None:
        return False, "disabled"
    state = prepared.states.get(info.pk)
    trial = False
    if state is not None and state.state != "closed":
        allowed, trial = await sync_to_async(default_breakers().admits, thread_sensitive=False)(info.pk, state)
        if not allowed:
            return False, "skipped_open"
    if info.rpm_budget or info.tpm_budget:
        tokens = prepared.prompt_tokens + prepared.call.max_tokens
        taken = await _budgets.atake(info.pk, rpm=info.rpm_budget, tpm=info.tpm_budget, tokens=tokens)
        if not taken:
            if trial:  # the trial was never tried: let the next request take it
                await sync_to_async(default_breakers().release, thread_sensitive=False)(info.pk)
            return False, "skipped_budget"
    return True, None


async def _failed(prepared: Prepared, model_id: str, error: LLMError) -> None:
    prepared.attempts.append({"model": model_id, "outcome": "error", "error": _error_text(error)})
    info = prepared.config.models[model_id]
    if error.retryable:
        await sync_to_async(default_breakers().record_failure, thread_sensitive=False)(info.pk, _error_text(error))
        return
    state = prepared.states.get(info.pk)
    if state is not None and state.state != "closed":
        # A half-open trial that ended in the caller's own error says nothing about the model: give it back.
        await sync_to_async(default_breakers().release, thread_sensitive=False)(info.pk)


async def _succeeded(prepared: Prepared, model_id: str) -> None:
    prepared.attempts.append({"model": model_id, "outcome": "ok"})
    info = prepared.config.models[model_id]
    state = prepared.states.get(info.pk)
    if state is not None and (state.state != "closed" or state.failures):
        await sync_to_async(default_breakers().record_success, thread_sensitive=False)(info.pk, state)


def _error_text(error: LLMError) -> str:
    status = f" (HTTP {error.status_code})" if error.status_code else ""
    return f"{error.code}: {error.message}{status}"[:300]


def final_error(error: LLMError, attempts: list[dict[str, Any]]) -> ApiError:
    """A non-retryable upstream error, as the client should see it."""
    extra = {"attempts": attempts}
    if isinstance(error, ContentFilteredError):
        return InvalidRequest(error.message, code="content_filter", extra=extra)
    if isinstance(error, BadRequestError):
        return InvalidRequest(
            f"The upstream model refused the request: {error.message}", code="upstream_bad_request", extra=extra
        )
    if isinstance(error, AuthenticationError):
        return UpstreamFailed(
            "The upstream provider refused the platform's credentials.",
            code="upstream_authentication_failed",
            extra=extra,
        )
    if isinstance(error, NotFoundError):
        return UpstreamFailed(
            "The upstream provider does not know this model.", code="upstream_model_not_found", extra=extra
        )
    return UpstreamFailed(f"The upstream model failed: {error.message}", code=error.code, extra=extra)


def exhausted(prepared: Prepared, last_error: LLMError | None) -> ApiError:
    """Every model of the chain failed or was skipped."""
    attempts = prepared.attempts
    extra = {"attempts": attempts}
    if not prepared.route.chain:
        return ServiceUnavailable(
            f"No model is configured for category {prepared.route.category!r}.", code="no_model_available", extra=extra
        )
    called = [a for a in attempts if a["outcome"] == "error"]
    if not called:
        return ServiceUnavailable(
            "Every model of the chain is unavailable (circuit open or budget spent).",
            code="no_model_available",
            extra=extra,
            headers={"Retry-After": "30"},
        )
    if (
        last_error is not None
        and isinstance(last_error, LLMTimeoutError)
        and all(a["error"].startswith("timeout") for a in called)
    ):
        return UpstreamTimeout("Every model of the chain timed out.", extra=extra)
    return UpstreamFailed(
        f"Every model of the chain failed ({len(called)} attempts).", code="all_models_failed", extra=extra
    )


async def generate(prepared: Prepared) -> tuple[GenerationResult, str]:
    """The first successful completion along the chain, and the model id that gave it."""
    handler = handler_for(prepared.config.providers)
    last_error: LLMError | None = None
    for model_id in prepared.route.chain:
        admitted, why = await _admit(prepared, model_id)
        if not admitted:
            prepared.attempts.append({"model": model_id, "outcome": why})
            continue
        with spans.attempt(prepared, model_id) as traced:
            try:
                result = await handler.agenerate(model_id, prepared.call.messages, **_call_kwargs(prepared.call))
            except LLMError as error:
                traced.failed(error)
                await _failed(prepared, model_id, error)
                if not error.retryable:
                    raise final_error(error, prepared.attempts) from None
                last_error = error
                continue
            traced.ok(result)
        await _succeeded(prepared, model_id)
        return result, model_id
    raise exhausted(prepared, last_error)


@dataclass
class StreamStart:
    model_id: str


async def stream(prepared: Prepared) -> AsyncGenerator[StreamEvent | StreamStart, None]:
    """Events of the first model that produces a token; falls back while nothing was sent.

    Yields ``StreamStart`` once a model is committed to, then its deltas and its final ``done`` event.
    An error after the first token propagates as ``LLMError`` (the caller reports it in-stream).
    """
    handler = handler_for(prepared.config.providers)
    last_error: LLMError | None = None
    for model_id in prepared.route.chain:
        admitted, why = await _admit(prepared, model_id)
        if not admitted:
            prepared.attempts.append({"model": model_id, "outcome": why})
            continue
        with spans.attempt(prepared, model_id) as traced:
            events = handler.astream(model_id, prepared.call.messages, **_call_kwargs(prepared.call)).__aiter__()
            try:
                first = await events.__anext__()
            except LLMError as error:
                traced.failed(error)
                await _failed(prepared, model_id, error)
                if not error.retryable:
                    raise final_error(error, prepared.attempts) from None
                last_error = error
                continue
            yield StreamStart(model_id)
            yield first
            event = first
            try:
                async for event in events:
                    yield event
            except LLMError as error:
                traced.failed(error)
                await _failed(prepared, model_id, error)
                raise
            traced.ok(event.result if event.type == "done" else None)  # the last event carries the result
        await _succeeded(prepared, model_id)
        return
    raise exhausted(prepared, last_error)


def partial_result(prepared: Prepared, model_id: str, sent: list[str]) -> GenerationResult:
    """What a stream that broke off had produced: its tokens are booked (estimated from the text sent)."""
    text = "".join(sent)
    completion = count_tokens(text, model_id.partition("/")[2])
    prompt = prepared.prompt_tokens
    elapsed_ms = (time.perf_counter() - prepared.started) * 1000
    return GenerationResult(
        text=text,
        finish_reason=None,
        tool_calls=(),
        usage=Usage(prompt, completion, prompt + completion, estimated=True),
        timings=Timings(ttft_ms=None, total_ms=elapsed_ms, tokens_per_sec=None),
        model=model_id,
        provider=prepared.config.models[model_id].provider if model_id in prepared.config.models else "",
    )


def build_meta(prepared: Prepared, result: GenerationResult | None, model_id: str | None) -> dict[str, Any]:
    elapsed_ms = (time.perf_counter() - prepared.started) * 1000
    info = prepared.config.models.get(model_id) if model_id else None
    prompt = result.usage.prompt_tokens if result else prepared.prompt_tokens
    completion = result.usage.completion_tokens if result else 0
    cost = account(info, prompt, completion)
    return {
        "request_id": prepared.call.request_id,
        "tokens_used": prompt + completion,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "response_time": f"{elapsed_ms / 1000:.2f}s",
        "response_time_ms": round(elapsed_ms, 2),
        "ttft_ms": round(result.timings.ttft_ms, 2) if result and result.timings.ttft_ms is not None else None,
        "model": model_id,
        "provider": info.provider if info else None,
        "category": prepared.route.category or None,
        "route_mode": prepared.route.route_mode,
        "attempts": prepared.attempts,
        "cost_usd": cost.cost_usd,
        "energy_wh": cost.energy_wh,
        "co2e_g": cost.co2e_g,
        "energy_wh_low": cost.energy_wh_low,
        "energy_wh_high": cost.energy_wh_high,
        "energy_estimated": cost.estimated,
        "_energy": cost.usage_fields(),  # copied onto the usage record by finish(), never sent
    }


async def _settle_budget(prepared: Prepared, meta: Mapping[str, Any]) -> None:
    model_id = meta["model"]
    info = prepared.config.models.get(model_id) if model_id else None
    if info is not None and info.tpm_budget:
        # _admit reserved prompt + max_tokens; settle on the real completion.
        await _budgets.acharge(
            info.pk, tpm=info.tpm_budget, tokens=int(meta["completion_tokens"]) - prepared.call.max_tokens
        )


async def finish(
    prepared: Prepared, meta: dict[str, Any], *, status: str = "ok", error_code: str = "", final: bool = True
) -> None:
    """Book the request: its tokens against the key's TPM (the reservation settled with the tokens in
    ``meta``, as the usage record books them), a usage record, metrics.

    ``final=False``: the call will be tried again (a job's retry), so its reservation stays for that try.
    """
    energy = meta.pop("_energy", {})
    reservation, prepared.reservation = prepared.reservation, None
    used = int(meta["prompt_tokens"]) + int(meta["completion_tokens"])
    if final and prepared.settle_in_background:  # a server's request: its response need not wait for Redis
        limits.settle_tokens_soon(reservation, used)
    elif final:  # a job's run: its worker's loop would cancel a settle still under way when the task returns
        await limits.settle_tokens(reservation, used)
    if status == "ok":
        await _settle_budget(prepared, meta)
    usage_buffer.add(
        {
            "request_id": prepared.call.request_id,
            "api_key_id": prepared.call.key.id if prepared.call.key else None,
            "user_id": prepared.call.user_id[:200],
            "endpoint": prepared.call.endpoint,
            "category": prepared.route.category,
            "route_mode": prepared.route.route_mode,
            "model": meta["model"] or "",
            "provider": meta["provider"] or "",
            "attempts": list(prepared.attempts),
            "status": status,
            "error_code": error_code[:60],
            "stream": prepared.call.stream,
            "prompt_tokens": meta["prompt_tokens"],
            "completion_tokens": meta["completion_tokens"],
            "ttft_ms": meta["ttft_ms"],
            "latency_ms": meta["response_time_ms"],
            "cost_usd": meta["cost_usd"],
            "energy_wh": meta["energy_wh"],
            "co2e_g": meta["co2e_g"],
            **energy,
            "created_at": datetime.now(UTC),
        }
    )
    metrics.observe(prepared, meta, status)
