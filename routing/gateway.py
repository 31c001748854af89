"""The gateway: one call per request, from the key's limits to its usage record.

A front door builds a ``Call`` and makes one of two calls:

* ``await complete(call)`` → ``Completion`` (the result, the model that gave it, the request's meta);
* ``stream = streaming(call)``; ``await stream.start()`` (or ``async with stream``) commits to the first
  model that produces a token; ``async for event in stream`` relays its deltas; ``stream.meta`` once over.

Either raises ``GatewayError`` for a request it could not serve (limits, routing, every model failed); a
stream that breaks off after its first token raises the model's ``LLMError`` in-stream. Inside: the limits
(unless the call was admitted elsewhere: an async job, at submission), the route, the chain walk behind the
breakers and outbound budgets (falling back on retryable errors; a stream only while no token was sent),
then the accounting and the usage record, booked once whatever the outcome (answer, error, cancellation,
client gone), off the request path.

Admission reserves the most the call can use on the key's tokens/minute (its prompt and ``max_tokens`` for
each of its ``n`` choices), as does each model's outbound token budget; the booking settles that
reservation with what the call used (a call that never reaches it holds its reservation until the minute
ends).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from accounts.selectors import KeyInfo
from budgets.selectors import BudgetTable, budget_table
from ledger.accounting import account
from ledger.buffer import usage_buffer
from ledger.rows import UsageRow
from llm import (
    GenerationResult,
    LLMError,
    LLMTimeoutError,
    StreamEvent,
    Timings,
    UnsupportedParameterError,
    Usage,
    count_message_tokens,
    count_tokens,
)

from . import breaker, limits, metrics, quota, spans
from .access import allowed_route
from .breaker import BreakerState, default_breakers
from .budgeting import budget_costs, reachable_models, spend_of
from .engine import SINGLE_ATTEMPT, handler_for
from .errors import GatewayError, Reason, final_error
from .models import Strategy
from .router import (
    ROUTING_MODES,
    Route,
    choose_route,
    classifier_prompt,
    explicit_route,
    parse_category_answer,
    routing_text,
)
from .selectors import RoutingConfig, latency_figures, routing_config
from .semantic import semantic_category
from .strategy import Freshness, rank

logger = logging.getLogger(__name__)
_budgets = limits.OutboundBudgets()


@dataclass(frozen=True, slots=True)
class Admission:
    """A call admitted before it runs (an async job, at submission): the gateway does not ask the limits again."""

    reservation: quota.Reservation | None  # the key's tokens hold, settled when the call is booked
    # A retryable failure before any token will be tried again (a job's run short of its last attempt): the
    # hold then stays for that try, which settles it.
    retries_left: bool = False


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
    admission: Admission | None = None  # None: the gateway admits the call (the key's limits) itself
    # Every other field of an OpenAI chat-completions body (response_format, seed, logprobs, n, …): the
    # gateway does not interpret them; providers pass them on or translate them (issue 15).
    params: dict[str, Any] = field(default_factory=dict)
    # The Messages door's top_k, which has no chat-completions field: an Anthropic provider sends it, an
    # OpenAI-compatible one refuses it as unsupported_parameter (or drops it: drop_params).
    top_k: int | None = None
    # The body as a door received it in a provider's own format ({"anthropic": the Messages body}): a
    # provider of that format is sent it as it came (thinking, cache_control, …) and answers in kind
    # (``GenerationResult.native``, ``StreamEvent.native``); any other model of the chain gets ``messages``.
    native: dict[str, dict[str, Any]] | None = None

    @property
    def choices(self) -> int:
        """How many answers the call asks for (``n``): each may be ``max_tokens`` long."""
        n = self.params.get("n")
        # The chat door checked n (an integer, 1..128); anything else asks for one answer.
        return n if type(n) is int and n > 1 else 1

    @property
    def most_completion_tokens(self) -> int:
        """The most tokens the call can generate: ``max_tokens`` for each of its choices."""
        return self.max_tokens * self.choices


def generation_call(
    values: Mapping[str, Any],
    *,
    key: KeyInfo | None,
    request_id: str,
    endpoint: str,
    messages: list[dict[str, Any]] | None = None,
    stream: bool | None = None,
    admission: Admission | None = None,
) -> Call:
    """The call of a generate-style body (``GenerateInput`` or a serializer extending it, or an async job's
    stored request): its ``system``, the conversation's earlier turns (an async job's ``messages``) and
    ``prompt``, unless the door built the ``messages`` (RAG)."""
    if messages is None:
        messages = [{"role": "system", "content": values["system"]}] if values.get("system") else []
        messages.extend(values.get("messages") or [])
        messages.append({"role": "user", "content": values["prompt"]})
    return Call(
        key=key,
        request_id=request_id,
        endpoint=endpoint,
        messages=messages,
        temperature=values.get("temperature", 0.7),
        top_p=values.get("top_p", 1.0),
        max_tokens=values.get("max_tokens", 256),
        user_id=values.get("user_id", ""),
        model=values.get("model"),
        category=values.get("category"),
        route_mode=values.get("route_mode"),
        stream=bool(values.get("stream", False)) if stream is None else stream,
        admission=admission,
    )


@dataclass
class Prepared:
    call: Call
    config: RoutingConfig
    route: Route
    states: dict[int, BreakerState]
    prompt_tokens: int
    started: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    reservation: quota.Reservation | None = None  # settled (and cleared) by _book()
    slot: limits.Slot | None = None  # the key's parallel-request slot, given back (and cleared) by _book()
    # Admitted by the request itself, in a server: _book() need not wait for the settle (see there).
    settle_in_background: bool = False


def admit(call: Call) -> quota.Reservation | None:
    """The key's limits for a call run later (an async job, at submission): RPM, caps, a TPM reservation,
    which the run settles (``Call.admission``). A model or category the call names must exist now."""
    if call.key is None:
        explicit_route(routing_config.get(), model=call.model, category=call.category)
        return None
    prompt_tokens = count_message_tokens(call.messages)
    budgets = _budgets_of(call, budget_table.get(), routing_config.get(), None, prompt_tokens)
    reservation = limits.admit_key_sync(
        call.key, prompt_tokens=prompt_tokens, max_tokens=call.max_tokens, choices=call.choices, budgets=budgets
    )
    try:
        _check_named_route(call, routing_config.get())
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
    budgets = _budgets_of(call, await budget_table.aget(), await routing_config.aget(), None, prompt_tokens)
    admitted = await limits.admit_key(
        call.key,
        prompt_tokens=prompt_tokens,
        max_tokens=call.max_tokens,
        choices=call.choices,
        budgets=budgets,
        hold_slot=False,
    )
    try:
        _check_named_route(call, await routing_config.aget())
    except BaseException:
        await limits.settle_tokens(admitted.reservation, 0)
        raise
    return admitted.reservation


def _check_named_route(call: Call, config: RoutingConfig) -> None:
    """A model or category the call names must exist, and the key may use it (or one model of its chain)."""
    route = explicit_route(config, model=call.model, category=call.category)
    if route is not None:
        allowed_route(call.key, route, config)


def _budgets_of(
    call: Call, table: BudgetTable, config: RoutingConfig, route: Route | None, prompt_tokens: int
) -> list[limits.BudgetCost]:
    """The budgets the call is under, each with the most the call can cost on the models it may reach."""
    assert call.key is not None
    if not table.by_key.get(call.key.id) and not (call.key.team_id and table.by_team.get(call.key.team_id)):
        return []  # the common case: no budget, nothing to account
    models = reachable_models(config, model=call.model, category=call.category, route=route)
    return budget_costs(
        table,
        call.key,
        user_id=call.user_id,
        models=models,
        prompt_tokens=prompt_tokens,
        completion_tokens=call.most_completion_tokens,
    )


async def _config() -> RoutingConfig:
    # In memory; a thread (for Redis and maybe the database) only when it is time to look for changes.
    return await routing_config.aget()


async def _prepare(call: Call) -> Prepared:
    """The call's limits (unless it was admitted elsewhere), its route, and the chain's breaker states.

    The limits come first: a request they refuse is refused whatever its route. When choosing the route
    calls no model (``RoutingMode.routes_before_limits``) it is computed first anyway (it is pure), so that
    the limits and the chain's breaker states take one round trip to Redis; its errors are raised after the
    limits, as if it had come second.
    """
    started = time.perf_counter()
    config = await _config()
    prompt_tokens = count_message_tokens(call.messages)
    mode = call.route_mode or settings.ROUTING_MODE
    if call.admission is not None or call.key is None:
        reservation = call.admission.reservation if call.admission is not None else None
        route = await _route(call, config, mode, prompt_tokens)
        states = await breaker.states_for(config, route.chain)
        return Prepared(call, config, route, states, prompt_tokens, started, reservation=reservation)
    if ROUTING_MODES[mode].routes_before_limits:
        route, states, admitted = await _limits_after_route(call, config, mode, prompt_tokens)
    else:
        route, states, admitted = await _limits_then_route(call, config, mode, prompt_tokens)
    return Prepared(
        call,
        config,
        route,
        states,
        prompt_tokens,
        started,
        reservation=admitted.reservation,
        slot=admitted.slot,
        settle_in_background=True,
    )


async def _limits_then_route(
    call: Call, config: RoutingConfig, mode: str, prompt_tokens: int
) -> tuple[Route, dict[int, BreakerState], limits.Admitted]:
    assert call.key is not None
    budgets = _budgets_of(call, await budget_table.aget(), config, None, prompt_tokens)
    admitted = await limits.admit_key(
        call.key, prompt_tokens=prompt_tokens, max_tokens=call.max_tokens, choices=call.choices, budgets=budgets
    )
    try:
        route = await _route(call, config, mode, prompt_tokens)
        states = await breaker.states_for(config, route.chain)
    except BaseException:  # no call will be made: nothing was used
        await limits.settle_tokens(admitted.reservation, 0)
        await limits.release_slot(admitted.slot)
        raise
    return route, states, admitted


async def _limits_after_route(
    call: Call, config: RoutingConfig, mode: str, prompt_tokens: int
) -> tuple[Route, dict[int, BreakerState], limits.Admitted]:
    assert call.key is not None
    route_error: Exception | None = None
    keys: list[str] = []
    chosen: Route | None = None
    try:
        route = chosen = await _route(call, config, mode, prompt_tokens)
        keys = breaker.cache_keys(config, route.chain)
    except Exception as exc:
        route_error = exc
    budgets = _budgets_of(call, await budget_table.aget(), config, chosen, prompt_tokens)
    admitted = await limits.admit_key(
        call.key,
        prompt_tokens=prompt_tokens,
        max_tokens=call.max_tokens,
        choices=call.choices,
        read=keys,
        budgets=budgets,
    )
    try:
        if route_error is not None:
            raise route_error
        states = await breaker.states_for(config, route.chain, admitted.reads)
    except BaseException:
        await limits.settle_tokens(admitted.reservation, 0)
        await limits.release_slot(admitted.slot)
        raise
    return route, states, admitted


async def _route(call: Call, config: RoutingConfig, mode: str, prompt_tokens: int) -> Route:
    async def classify(text: str, names: Sequence[str]) -> str | None:
        return await _classify(config, text, names)

    async def similar(text: str) -> str | None:
        return await semantic_category(config, text)

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
        # The chain walks only the models the key may use (403 when none is left).
        route = allowed_route(call.key, route, config)
        route = await _by_strategy(call, config, route, prompt_tokens)
        traced.chosen(route)
    return route


async def _by_strategy(call: Call, config: RoutingConfig, route: Route, prompt_tokens: int) -> Route:
    """The route's chain in the order its category's strategy prefers for this call (``routing/strategy.py``)."""
    category = config.categories.get(route.category) if route.category else None
    if category is None or category.strategy == Strategy.ORDERED:
        return route
    latency = freshness = None
    if category.strategy == Strategy.LATENCY:  # its own snapshot: in memory, Redis only when due for a check
        try:
            latency = await latency_figures.aget()
        except Exception:  # figures that cannot be read are missing ones: the chain order, not a failed request
            logger.warning("latency figures unavailable; routing %s in chain order", category.name, exc_info=True)
            latency = {}
        freshness = Freshness(settings.ROUTING_LATENCY_MAX_AGE_S, settings.ROUTING_LATENCY_MIN_SAMPLES)
    ranking = rank(
        category.strategy,
        route.chain,
        config.models,
        prompt_tokens=prompt_tokens,
        completion_tokens=call.most_completion_tokens,
        now=datetime.now(UTC),
        latency=latency,
        freshness=freshness,
    )
    return replace(route, chain=ranking.chain, reasons=ranking.reasons)


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
        "native": call.native,
        "params": call.params,
        "top_k": call.top_k,
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
        tokens = prepared.prompt_tokens + prepared.call.most_completion_tokens
        taken = await _budgets.atake(info.pk, rpm=info.rpm_budget, tpm=info.tpm_budget, tokens=tokens)
        if not taken:
            if trial:  # the trial was never tried: let the next request take it
                await sync_to_async(default_breakers().release, thread_sensitive=False)(info.pk)
            return False, "skipped_budget"
    return True, None


# Why a model the strategy ranked was not called, said before the ranking's own reason.
_SKIPPED_BECAUSE = {"skipped_open": "breaker open", "skipped_budget": "outbound budget spent", "disabled": "disabled"}


def _attempt(prepared: Prepared, model_id: str, outcome: str, **details: Any) -> None:
    """Record one entry of ``meta.attempts``; under a strategy other than ``ordered``, with its ``reason``:
    why the model stood where it did, and why it was skipped (keys are only ever added to these entries)."""
    entry = {"model": model_id, "outcome": outcome, **details}
    ranked = prepared.route.reasons.get(model_id)
    if ranked is not None:
        skipped = _SKIPPED_BECAUSE.get(outcome)
        entry["reason"] = f"{skipped} (ranked by {ranked})" if skipped else ranked
    prepared.attempts.append(entry)


async def _failed(prepared: Prepared, model_id: str, error: LLMError) -> None:
    _attempt(prepared, model_id, "error", error=_error_text(error))
    info = prepared.config.models[model_id]
    if error.retryable:
        await sync_to_async(default_breakers().record_failure, thread_sensitive=False)(info.pk, _error_text(error))
        return
    state = prepared.states.get(info.pk)
    if state is not None and state.state != "closed":
        # A half-open trial that ended in the caller's own error says nothing about the model: give it back.
        await sync_to_async(default_breakers().release, thread_sensitive=False)(info.pk)


async def _succeeded(prepared: Prepared, model_id: str) -> None:
    _attempt(prepared, model_id, "ok")
    info = prepared.config.models[model_id]
    state = prepared.states.get(info.pk)
    if state is not None and (state.state != "closed" or state.failures):
        await sync_to_async(default_breakers().record_success, thread_sensitive=False)(info.pk, state)


def _error_text(error: LLMError) -> str:
    status = f" (HTTP {error.status_code})" if error.status_code else ""
    return f"{error.code}: {error.message}{status}"[:300]


def exhausted(prepared: Prepared, last_error: LLMError | None) -> GatewayError:
    """Every model of the chain failed or was skipped. Retryable when they failed for passing reasons (errors,
    timeouts, open breakers, spent budgets); a category without a model stays so."""
    attempts = prepared.attempts
    extra = {"attempts": attempts}
    if not prepared.route.chain:
        return GatewayError(
            f"No model is configured for category {prepared.route.category!r}.",
            reason=Reason.UNAVAILABLE,
            code="no_model_available",
            extra=extra,
        )
    called = [a for a in attempts if a["outcome"] == "error"]
    if not called:
        return GatewayError(
            "Every model of the chain is unavailable (circuit open or budget spent).",
            reason=Reason.UNAVAILABLE,
            code="no_model_available",
            retryable=True,
            retry_after=30,
            extra=extra,
        )
    if (
        last_error is not None
        and isinstance(last_error, LLMTimeoutError)
        and all(a["error"].startswith("timeout") for a in called)
    ):
        return GatewayError(
            "Every model of the chain timed out.",
            reason=Reason.UPSTREAM_TIMEOUT,
            code="upstream_timeout",
            retryable=True,
            extra=extra,
        )
    return GatewayError(
        f"Every model of the chain failed ({len(called)} attempts).",
        reason=Reason.UPSTREAM_FAILED,
        code="all_models_failed",
        retryable=True,
        extra=extra,
    )


# --- a complete answer ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completion:
    result: GenerationResult
    model_id: str  # the model that answered
    meta: dict[str, Any]  # what the request used and cost (/api/v1/generate's ``meta``)
    category: str  # "" when the call named its model
    attempts: int  # models tried or skipped, the one that answered included


async def complete(call: Call) -> Completion:
    """The first successful completion along the chain, booked; ``GatewayError`` when there is none."""
    prepared = await _prepare(call)
    result: GenerationResult | None = None
    model_id: str | None = None
    outcome = ("error", "internal_error", False)
    try:
        result, model_id = await _generate(prepared)
        outcome = ("ok", "", False)
    except BaseException as exc:
        outcome = _outcome(exc)
        raise
    finally:
        status, code, _ = outcome
        meta = await _book(prepared, _meta(prepared, result, model_id), status=status, error_code=code)
    assert result is not None and model_id is not None  # else _generate raised
    return Completion(result, model_id, meta, prepared.route.category, len(prepared.attempts))


async def _generate(prepared: Prepared) -> tuple[GenerationResult, str]:
    handler = handler_for(prepared.config.providers)
    last_error: LLMError | None = None
    unsupported: UnsupportedParameterError | None = None
    for model_id in prepared.route.chain:
        admitted, why = await _admit(prepared, model_id)
        if not admitted:
            _attempt(prepared, model_id, why or "skipped")
            continue
        with spans.attempt(prepared, model_id) as traced:
            try:
                result = await handler.agenerate(model_id, prepared.call.messages, **_call_kwargs(prepared.call))
            except LLMError as error:
                traced.failed(error)
                await _failed(prepared, model_id, error)
                if isinstance(error, UnsupportedParameterError):
                    unsupported = unsupported or error  # the next model of the chain may honour it
                elif not error.retryable:
                    raise final_error(error, prepared.attempts) from None
                else:
                    last_error = error
                continue
            traced.ok(result)
        await _succeeded(prepared, model_id)
        return result, model_id
    raise _chain_error(prepared, last_error, unsupported)


def _chain_error(
    prepared: Prepared, last_error: LLMError | None, unsupported: UnsupportedParameterError | None
) -> GatewayError:
    """Why no model of the chain answered. A param that no model tried could honour is the client's error
    (400 ``unsupported_parameter``), unless another model failed for a passing reason: then it is that."""
    if unsupported is not None and last_error is None:
        return final_error(unsupported, prepared.attempts)
    return exhausted(prepared, last_error)


def _outcome(exc: BaseException | None) -> tuple[str, str, bool]:
    """(status, error code, retryable) of a call that ended on ``exc``; None: its caller stopped reading."""
    if exc is None or isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled", "client_disconnected", False
    if isinstance(exc, (GatewayError, LLMError)):
        return "error", exc.code, exc.retryable
    return "error", "internal_error", False


# --- a stream ------------------------------------------------------------------------------------------------


@dataclass
class _StreamStart:
    model_id: str


class Stream:
    """One streamed call (see the module's docstring). ``start()`` (or entering ``async with``) commits to a
    model; iterating relays its events; leaving the ``async with`` books the call if the stream did not
    (a caller that stops reading: ``cancel()``, a client gone, an error of its own)."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.model_id = ""  # the model committed to, once started
        self.category = ""  # "" when the call named its model
        self.attempts = 0  # models tried or skipped until the one committed to, that one included
        self.prompt_tokens = 0  # the prompt's tokens as the gateway counted them, once started
        self.sent: list[str] = []  # the content and tool arguments relayed so far
        self.result: GenerationResult | None = None  # the model's whole answer, when it finished
        self.meta: dict[str, Any] | None = None  # once booked
        self._prepared: Prepared | None = None
        self._events: AsyncGenerator[StreamEvent | _StreamStart, None] | None = None
        self._ending: tuple[str, str, bool] | None = None

    @property
    def text(self) -> str:
        return "".join(self.sent)

    async def start(self) -> None:
        """Limits, route, and the chain walk until a model produces its first token. Raises ``GatewayError``
        before any token (booked, unless the limits or the router refused the call)."""
        if self._events is not None:
            return
        prepared = self._prepared = await _prepare(self.call)
        self.category = prepared.route.category
        self.prompt_tokens = prepared.prompt_tokens
        self._events = self._relay(prepared)
        try:
            start = await self._events.__anext__()
        except BaseException as exc:
            await self._end(*_outcome(exc))
            raise
        assert isinstance(start, _StreamStart)
        self.model_id = start.model_id
        self.attempts = len(prepared.attempts) + 1

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        # The relay itself, no layer around it: the per-token path stays one generator deep.
        assert self._events is not None, "start() the stream before reading it"
        return self._events  # type: ignore[return-value]  # its _StreamStart was read by start()

    def cancel(self, code: str) -> None:
        """The caller stops reading for its own reason (a job cancelled): booked ``cancelled`` with ``code``."""
        self._ending = ("cancelled", code, False)

    async def __aenter__(self) -> Stream:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.meta is None:
            try:
                if self._events is not None:
                    await self._events.aclose()  # stop reading the upstream
            finally:  # booked even when closing the upstream fails
                await self._end(*(self._ending or _outcome(exc)))

    async def _end(self, status: str, code: str, retryable: bool) -> None:
        """Book the call, once: its tokens (those of a stream that broke off, counted from what was sent)."""
        prepared = self._prepared
        if self.meta is not None or prepared is None:
            return
        result = self.result
        if result is None and self.model_id:
            result = _partial(prepared, self.model_id, self.sent)
        admission = self.call.admission
        retried = retryable and not self.sent and admission is not None and admission.retries_left
        meta = _meta(prepared, result, self.model_id or None)
        self.meta = await _book(prepared, meta, status=status, error_code=code, final=not retried)

    async def _relay(self, prepared: Prepared) -> AsyncGenerator[StreamEvent | _StreamStart, None]:
        """Events of the first model that produces a token, falling back while nothing was sent: a
        ``_StreamStart`` once committed to a model, then its deltas and its ``done`` event. Books the call
        when the model finishes or fails (its error then propagates)."""
        handler = handler_for(prepared.config.providers)
        last_error: LLMError | None = None
        unsupported: UnsupportedParameterError | None = None
        for model_id in prepared.route.chain:
            admitted, why = await _admit(prepared, model_id)
            if not admitted:
                _attempt(prepared, model_id, why or "skipped")
                continue
            with spans.attempt(prepared, model_id) as traced:
                upstream = handler.astream(model_id, prepared.call.messages, **_call_kwargs(prepared.call))
                events = upstream.__aiter__()
                try:
                    first = await events.__anext__()
                except LLMError as error:
                    traced.failed(error)
                    await _failed(prepared, model_id, error)
                    if isinstance(error, UnsupportedParameterError):
                        unsupported = unsupported or error  # the next model of the chain may honour it
                    elif not error.retryable:
                        raise final_error(error, prepared.attempts) from None
                    else:
                        last_error = error
                    continue
                yield _StreamStart(model_id)
                event = first
                try:
                    self._note(event)
                    if event.type != "done":
                        yield event
                        async for event in events:
                            self._note(event)
                            if event.type == "done":
                                break
                            yield event
                except LLMError as error:
                    traced.failed(error)
                    await _failed(prepared, model_id, error)
                    await self._end("error", error.code, error.retryable)
                    raise
                await upstream.aclose()  # the model's last event was read: let its stream release the connection
                traced.ok(event.result if event.type == "done" else None)  # the last event carries the result
            await _succeeded(prepared, model_id)
            # Booked before the door sees ``done``: a door that ends its answer on it (Anthropic's message_stop)
            # may lose its client right after, and the call succeeded all the same.
            await self._end("ok", "", False)
            if event.type == "done":
                yield event
            return
        raise _chain_error(prepared, last_error, unsupported)

    def _note(self, event: StreamEvent) -> None:
        if event.type == "delta":
            if event.content:
                self.sent.append(event.content)
            if event.tool_calls:
                self.sent.extend(t.arguments for t in event.tool_calls)
        elif event.type == "done":
            self.result = event.result


def streaming(call: Call) -> Stream:
    return Stream(call)


# --- booking -------------------------------------------------------------------------------------------------


def _partial(prepared: Prepared, model_id: str, sent: list[str]) -> GenerationResult:
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


def _meta(prepared: Prepared, result: GenerationResult | None, model_id: str | None) -> dict[str, Any]:
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
        "_energy": cost.usage_fields(),  # copied onto the usage record by _book(), never sent
        # Decoding speed for the traffic percentiles (monitoring), on the usage record only: never sent.
        "_tokens_per_sec": round(result.timings.tokens_per_sec, 2)
        if result and result.timings.tokens_per_sec is not None
        else None,
    }


async def _settle_budget(prepared: Prepared, meta: Mapping[str, Any]) -> None:
    model_id = meta["model"]
    info = prepared.config.models.get(model_id) if model_id else None
    if info is not None and info.tpm_budget:
        # _admit reserved prompt + max_tokens per choice; settle on the real completion (every choice's):
        # what it used beyond the reservation, negative when (as mostly) it used less.
        beyond_reserved = int(meta["completion_tokens"]) - prepared.call.most_completion_tokens
        await _budgets.acharge(info.pk, tpm=info.tpm_budget, tokens=beyond_reserved)


async def _book(
    prepared: Prepared, meta: dict[str, Any], *, status: str, error_code: str, final: bool = True
) -> dict[str, Any]:
    """Book the request: its tokens against the key's TPM (the reservation settled with the tokens in
    ``meta``, as the usage record books them), a usage record, metrics. Returns ``meta`` as it is sent.

    ``final=False``: the call will be tried again (a job's retry), so its reservation stays for that try.
    """
    energy = meta.pop("_energy", {})
    tokens_per_sec = meta.pop("_tokens_per_sec", None)
    reservation, prepared.reservation = prepared.reservation, None
    slot, prepared.slot = prepared.slot, None
    used = int(meta["prompt_tokens"]) + int(meta["completion_tokens"])
    # The budgets are settled with what the usage record books, and when (see budgets.ledger).
    spend, booked_at = spend_of(meta), datetime.now(UTC)
    if final and prepared.settle_in_background:  # a server's request: its response need not wait for Redis
        limits.settle_tokens_soon(reservation, used, spend, booked_at=booked_at.timestamp())
        limits.release_slot_soon(slot)
    elif final:  # a job's run: its worker's loop would cancel a settle still under way when the task returns
        await limits.settle_tokens(reservation, used, spend, booked_at=booked_at.timestamp())
    if status == "ok":
        await _settle_budget(prepared, meta)
    usage_buffer.add(
        UsageRow(
            request_id=prepared.call.request_id,
            api_key_id=prepared.call.key.id if prepared.call.key else None,
            user_id=prepared.call.user_id[:200],
            endpoint=prepared.call.endpoint,
            category=prepared.route.category,
            route_mode=prepared.route.route_mode,
            model=meta["model"] or "",
            provider=meta["provider"] or "",
            attempts=list(prepared.attempts),
            status=status,
            error_code=error_code[:60],
            stream=prepared.call.stream,
            prompt_tokens=meta["prompt_tokens"],
            completion_tokens=meta["completion_tokens"],
            ttft_ms=meta["ttft_ms"],
            latency_ms=meta["response_time_ms"],
            tokens_per_sec=tokens_per_sec,
            **energy,  # cost, energy and CO2e as build_meta accounted them (Cost.usage_fields)
            created_at=booked_at,
        )
    )
    metrics.observe(prepared, meta, status)
    return meta
