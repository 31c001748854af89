"""Anthropic Messages API over plain HTTP: the transport's aiohttp path for async calls, its httpx2 client
for sync ones (`llm.transport`).

OpenAI-style requests are translated on the way out (system prompt, tool calls and results, tools,
tool_choice) and Anthropic answers translated back, so callers see one format for every provider.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx2

from ..errors import (
    AuthenticationError,
    BadRequestError,
    LLMError,
    NotFoundError,
    RateLimitedError,
    UpstreamServerError,
    error_for_status,
)
from ..transport import AIOHTTP_ERRORS, StatusError, Transport, sse_events
from ..types import (
    ChatRequest,
    GenerationResult,
    NativeEvent,
    ProviderConfig,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .base import Clock, Provider, StreamAccumulator, build_result

__all__ = [
    "ANTHROPIC_VERSION",
    "KINDS",
    "NATIVE_FORMAT",
    "REFUSAL",
    "TRANSLATED_PARAMS",
    "AnthropicProvider",
    "answer_tool_name",
    "to_anthropic_body",
]

ANTHROPIC_VERSION = "2023-06-01"
# The key of an Anthropic-format body in `ChatRequest.native`.
NATIVE_FORMAT = "anthropic"

_STOP_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
# The refusal of an Anthropic model that declined (stop_reason "refusal") without a word.
REFUSAL = "The model declined to answer this request."
# In-stream `error` events carry a type but no HTTP status.
_ERROR_TYPES: Mapping[str, type[LLMError]] = {
    "invalid_request_error": BadRequestError,
    "request_too_large": BadRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitedError,
    "api_error": UpstreamServerError,
    "overloaded_error": UpstreamServerError,
}
_PARSE_ERRORS = (KeyError, TypeError, AttributeError, IndexError, ValueError)


class AnthropicProvider(Provider):
    """Chat and streaming against `POST {base_url}/v1/messages` (or `{base_url}/messages` for a /v1 base).

    Timeouts behave as in `OpenAICompatProvider`. Embeddings are not offered (BadRequestError).
    """

    def __init__(self, config: ProviderConfig, *, clock: Clock = time.monotonic) -> None:
        super().__init__(config, clock=clock)
        base = config.base_url.rstrip("/")
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
        if config.api_key:
            headers["x-api-key"] = config.api_key
        headers.update(config.headers)
        # The sync client sends them on every request; the async (aiohttp) path per call.
        self._headers = headers
        self._http = Transport(config, headers=headers)

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The Messages API body; a param Anthropic cannot honour is refused (or dropped: `drop_params`). A
        native request's body goes as it came: its door's params are a translation of that body, not asks."""
        if _native_body(request) is not None:
            return to_anthropic_body(request, stream=stream)
        params = self.honoured_params(request, TRANSLATED_PARAMS)
        if params.get("service_tier") is not None and params["service_tier"] not in _SERVICE_TIERS:
            self.unhonoured(request, "service_tier")  # priority, flex, scale: no Anthropic equivalent
            del params["service_tier"]
        body = to_anthropic_body(request, stream=stream, params=params)
        effort = params.get("reasoning_effort")
        if effort is not None and "thinking" not in body and effort not in _NO_THINKING:
            # Anthropic thinks in at least 1024 tokens, fewer than max_tokens, and never with a forced tool
            # (which a response_format is, but with tools of the client's own and tool_choice auto).
            self.unhonoured(request, "reasoning_effort")
        return body

    def close(self) -> None:
        self._http.close()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- generate --------------------------------------------------------------------------------------

    def generate(self, request: ChatRequest) -> GenerationResult:
        start = self._clock()
        body = self._body(request, stream=False)
        try:
            response = self._http.client().post(
                self._url, json=body, timeout=self._http.httpx_timeout(request.timeout_s, stream=False)
            )
        except httpx2.HTTPError as exc:
            raise self._http.error(exc, request.model) from exc
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content, response.headers, request.model)
        return self._parse_message(response.content, request, start, self._clock())

    async def agenerate(self, request: ChatRequest) -> GenerationResult:
        start = self._clock()
        data = _encode(self._body(request, stream=False))
        try:
            async with asyncio.timeout(self._http.total_timeout(request.timeout_s)):
                response = await self._http.post(self._url, data, self._headers, timeout_s=request.timeout_s)
                try:
                    raw = await response.read()
                finally:
                    response.release()
        except StatusError as exc:
            raise self._status_error(exc.status, exc.body, exc.headers, request.model) from exc
        except (TimeoutError, *AIOHTTP_ERRORS) as exc:
            raise self._http.error(exc, request.model) from exc
        return self._parse_message(raw, request, start, self._clock())

    def _parse_message(self, raw: bytes, request: ChatRequest, start: float, end: float) -> GenerationResult:
        answer_tool = answer_tool_name(request.params)
        answered = False
        try:
            data = json.loads(raw)
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in data["content"]:
                kind = block.get("type")
                if kind == "text":
                    texts.append(block["text"])
                elif kind == "tool_use" and block["name"] == answer_tool:
                    # The structured answer (response_format): its input is the JSON the client asked for.
                    texts.append(json.dumps(block.get("input") or {}, ensure_ascii=False))
                    answered = True
                elif kind == "tool_use":
                    arguments = json.dumps(block.get("input") or {}, separators=(",", ":"), ensure_ascii=False)
                    calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
            stop_reason = data.get("stop_reason")
            if answered and stop_reason == "tool_use" and not calls:
                stop_reason = "end_turn"
            usage = _parse_usage(data.get("usage"))
            model = data.get("model")
        except _PARSE_ERRORS as exc:
            raise self._invalid(f"malformed Anthropic message: {exc!r}", request.model) from exc
        text, refusal = "".join(texts), None
        if stop_reason == "refusal":  # the model declined: its words are the chat refusal, not the content
            text, refusal = "", text or REFUSAL
        result = build_result(
            provider=self.name,
            request=request,
            refusal=refusal,
            text=text,
            finish_reason=_STOP_REASONS.get(stop_reason, stop_reason) if stop_reason else None,
            tool_calls=tuple(calls),
            usage=usage,
            model=model if isinstance(model, str) else None,
            start=start,
            first_token_at=None,
            end=end,
        )
        return replace(result, native=data) if _native_body(request) is not None else result

    # -- stream ----------------------------------------------------------------------------------------

    def stream(self, request: ChatRequest) -> Generator[StreamEvent, None, None]:
        start = self._clock()
        body = self._body(request, stream=True)
        first_token_bound = self._http.first_token_binds(request.timeout_s)
        acc = StreamAccumulator()
        state = _StreamState(request)
        try:
            with self._http.client().stream(
                "POST", self._url, json=body, timeout=self._http.httpx_timeout(request.timeout_s, stream=True)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response.status_code, response.content, response.headers, request.model)
                events = iter(httpx2.EventSource(response))
                while True:
                    try:
                        sse = next(events)
                    except StopIteration:
                        break
                    except httpx2.HTTPError as exc:
                        pending = first_token_bound and acc.first_token_at is None
                        raise self._http.error(exc, request.model, in_body=True, first_token_pending=pending) from exc
                    event = self._apply_event(sse.event, sse.data, acc, state, request.model)
                    if event is not None:
                        yield event
        except httpx2.HTTPError as exc:
            raise self._http.error(exc, request.model, first_token_pending=first_token_bound) from exc
        yield self._finish_stream(acc, state, request, start)

    async def astream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        start = self._clock()
        data = _encode(self._body(request, stream=True))
        first_deadline, total_deadline = self._http.stream_deadlines(request.timeout_s)
        first_token_bound = first_deadline < total_deadline
        acc = StreamAccumulator()
        state = _StreamState(request)
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await self._http.post(self._url, data, self._headers, timeout_s=request.timeout_s)
        except StatusError as exc:
            raise self._status_error(exc.status, exc.body, exc.headers, request.model) from exc
        except (TimeoutError, *AIOHTTP_ERRORS) as exc:
            raise self._http.error(exc, request.model, first_token_pending=first_token_bound) from exc
        events = sse_events(response)
        try:
            # Read to the end of the body (just after message_stop) so the connection returns to the pool.
            while True:
                deadline = first_deadline if acc.first_token_at is None else total_deadline
                try:
                    # Only the read is under the deadline, never a `yield` (see OpenAICompatProvider).
                    async with asyncio.timeout_at(deadline):
                        sse = await events.__anext__()
                except StopAsyncIteration:
                    break
                except (TimeoutError, *AIOHTTP_ERRORS) as exc:
                    pending = first_token_bound and acc.first_token_at is None
                    raise self._http.error(exc, request.model, in_body=True, first_token_pending=pending) from exc
                # An event without an `event:` line is a "message" event (the SSE specification).
                event = self._apply_event(sse.event or "message", sse.data, acc, state, request.model)
                if event is not None:
                    yield event
        finally:
            await events.aclose()
            response.release()
        yield self._finish_stream(acc, state, request, start)

    def _apply_event(
        self, name: str, data: str, acc: StreamAccumulator, state: _StreamState, model: str
    ) -> StreamEvent | None:
        """Fold one Anthropic SSE event into `acc`; the delta event to yield, if any."""
        try:
            payload = json.loads(data) if data else {}
            kind = payload.get("type", name)
            if state.native is not None and kind != "error":
                state.native.append((kind, payload))
            if kind == "content_block_delta":
                return state.relay(self._block_delta(payload, acc, state), kind)
            if kind == "content_block_start":
                return state.relay(self._block_start(payload, acc, state), kind)
            if kind == "message_start":
                _message_start(payload["message"], acc, state)
            elif kind == "message_delta":
                _message_delta(payload, acc, state)
            elif kind == "message_stop":
                state.stopped = True
            elif kind == "error":
                raise self._error_event(payload.get("error"), model)
            return None  # also for ping, content_block_stop and unknown future events
        except _PARSE_ERRORS as exc:
            raise self._invalid(f"malformed Anthropic stream event {name!r}: {exc!r}", model) from exc

    def _block_delta(
        self, payload: Mapping[str, Any], acc: StreamAccumulator, state: _StreamState
    ) -> StreamEvent | None:
        """A piece of a text block or of a tool call's arguments."""
        delta = payload["delta"]
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            text = delta.get("text") or ""
            if not text:
                return None
            self._first_token(acc)
            acc.add_text(text)
            return StreamEvent(type="delta", content=text)
        if delta_type == "input_json_delta":
            partial = delta.get("partial_json") or ""
            if partial and payload.get("index", 0) == state.answer_block:
                # The structured answer's JSON, streamed as the text it stands for.
                self._first_token(acc)
                acc.add_text(partial)
                return StreamEvent(type="delta", content=partial)
            tool_index = state.tool_blocks.get(payload.get("index", 0))
            if not partial or tool_index is None:
                return None
            acc.add_tool_call(tool_index, None, None, partial)
            call_delta = ToolCallDelta(index=tool_index, id=None, name=None, arguments=partial)
            return StreamEvent(type="delta", tool_calls=(call_delta,))
        return None  # thinking and signature deltas are not part of the answer

    def _block_start(
        self, payload: Mapping[str, Any], acc: StreamAccumulator, state: _StreamState
    ) -> StreamEvent | None:
        """A tool call's id and name, or a text block that starts with text."""
        block = payload["content_block"]
        block_type = block.get("type")
        if block_type == "tool_use" and block.get("name") == state.answer_tool:
            state.answer_block = payload.get("index", 0)
            return None
        if block_type == "tool_use":
            tool_index = len(state.tool_blocks)
            state.tool_blocks[payload.get("index", 0)] = tool_index
            self._first_token(acc)
            acc.add_tool_call(tool_index, block["id"], block["name"], "")
            call_delta = ToolCallDelta(index=tool_index, id=block["id"], name=block["name"], arguments="")
            return StreamEvent(type="delta", tool_calls=(call_delta,))
        if block_type == "text" and block.get("text"):
            self._first_token(acc)
            acc.add_text(block["text"])
            return StreamEvent(type="delta", content=block["text"])
        return None

    def _first_token(self, acc: StreamAccumulator) -> None:
        if acc.first_token_at is None:
            acc.first_token_at = self._clock()

    def _finish_stream(
        self, acc: StreamAccumulator, state: _StreamState, request: ChatRequest, start: float
    ) -> StreamEvent:
        if not state.stopped:
            raise self._invalid("the stream ended before message_stop", request.model)
        if state.input_tokens is not None:
            acc.usage = Usage(state.input_tokens, state.output_tokens, state.input_tokens + state.output_tokens)
        return state.finish(acc.done_event(provider=self.name, request=request, start=start, end=self._clock()))

    # -- errors ----------------------------------------------------------------------------------------

    def _status_error(self, status: int, raw: bytes, headers: Mapping[str, str], model: str) -> LLMError:
        message = ""
        try:
            error = json.loads(raw).get("error")
            if isinstance(error, dict):
                message = str(error.get("message") or "")
        except (ValueError, AttributeError):
            message = raw[:200].decode("utf-8", "replace")
        message = self._redact(message or f"HTTP {status} from Anthropic")
        # Anthropic has no error code for filtered input; its message names the policy.
        lowered = message.lower()
        filtered = status == 400 and ("content filter" in lowered or "content management policy" in lowered)
        return error_for_status(
            status,
            message,
            headers=headers,
            error_code="content_filter" if filtered else None,
            provider=self.name,
            model=model,
        )

    def _error_event(self, error: object, model: str) -> LLMError:
        error_type, message = "api_error", "error event in the stream"
        if isinstance(error, dict):
            error_type = str(error.get("type") or error_type)
            message = str(error.get("message") or message)
        cls = _ERROR_TYPES.get(error_type, UpstreamServerError)
        return cls(self._redact(message), provider=self.name, model=model)


KINDS: Mapping[str, type[Provider]] = {"anthropic": AnthropicProvider}


class _StreamState:
    __slots__ = ("answer_block", "answer_tool", "input_tokens", "native", "output_tokens", "stopped", "tool_blocks")

    def __init__(self, request: ChatRequest) -> None:
        self.input_tokens: int | None = None
        self.output_tokens = 0
        self.stopped = False
        self.tool_blocks: dict[int, int] = {}  # content block index -> tool call index
        # The structured answer's tool (response_format) and the content block that carries it, if any; a
        # native request is relayed as it came, so it has none.
        native = _native_body(request) is not None
        self.answer_tool = None if native else answer_tool_name(request.params)
        self.answer_block: int | None = None
        # A native request's upstream events not yet relayed (None: a translated request).
        self.native: list[NativeEvent] | None = [] if native else None

    def relay(self, event: StreamEvent | None, kind: str) -> StreamEvent | None:
        """``event`` with the native events so far, once a block starts or grows (the model's output: the
        gateway commits to the model on the first event it gets); None while they wait."""
        if self.native is None or kind not in ("content_block_start", "content_block_delta"):
            return event
        pending, self.native = tuple(self.native), []
        return replace(event or StreamEvent(type="delta"), native=pending)

    def finish(self, done: StreamEvent) -> StreamEvent:
        return done if self.native is None else replace(done, native=tuple(self.native))


def _message_start(message: Mapping[str, Any], acc: StreamAccumulator, state: _StreamState) -> None:
    """The upstream's model name, and the prompt's usage as counted so far."""
    if isinstance(message.get("model"), str):
        acc.model = message["model"]
    usage = message.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("input_tokens"), int):
        state.input_tokens = _input_tokens(usage)
        state.output_tokens = int(usage.get("output_tokens") or 0)


def _message_delta(payload: Mapping[str, Any], acc: StreamAccumulator, state: _StreamState) -> None:
    """The stop reason and the final usage."""
    stop_reason = (payload.get("delta") or {}).get("stop_reason")
    if stop_reason == "tool_use" and state.answer_block is not None and not state.tool_blocks:
        stop_reason = "end_turn"  # the structured answer is the answer, not a tool call
    if stop_reason:
        acc.finish_reason = _STOP_REASONS.get(stop_reason, stop_reason)
    if stop_reason == "refusal":  # what it said (streamed as content already) is the result's refusal
        acc.refusal.append("".join(acc.parts) or REFUSAL)
        acc.parts.clear()
    usage = payload.get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("input_tokens"), int):
            state.input_tokens = _input_tokens(usage)
        if isinstance(usage.get("output_tokens"), int):
            state.output_tokens = usage["output_tokens"]


def _input_tokens(usage: Mapping[str, Any]) -> int:
    # Cached prompt tokens are reported apart from input_tokens; the prompt is their sum.
    return (
        int(usage.get("input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0)
        + int(usage.get("cache_read_input_tokens") or 0)
    )


def _parse_usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("input_tokens"), int):
        return None
    prompt = _input_tokens(raw)
    completion = int(raw.get("output_tokens") or 0)
    return Usage(prompt, completion, prompt + completion)


# -- request translation -----------------------------------------------------------------------------


def to_anthropic_body(request: ChatRequest, *, stream: bool, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Messages API body for an OpenAI-style request.

    System messages become `system`; assistant `tool_calls` become `tool_use` blocks and `tool` messages
    `tool_result` blocks; consecutive messages of one role are merged, as Anthropic requires alternation.
    `temperature` is clamped to Anthropic's 0..1 range; `top_p` is sent only when not 1.

    A request that came in Anthropic's own format (`request.native["anthropic"]`) is sent as it came
    (thinking, cache_control, documents, …): only its model, max_tokens and stream are this call's.

    Otherwise `params` (default: the request's) are translated where Anthropic has an equivalent (`TRANSLATED_PARAMS`):
    `response_format` json_schema / json_object becomes a tool whose input is the answer, forced as far as
    the client's tool_choice allows (`_offer_answer_tool`); `parallel_tool_calls: false` becomes
    `disable_parallel_tool_use`; `top_k` (a chat client's extra body field) goes as it is, as does
    `request.top_k`; `reasoning_effort` becomes a `thinking` budget (`_thinking`); `metadata.user_id` becomes
    Anthropic's (unless `user` gave it); `service_tier` auto / default becomes auto / standard_only. Others
    are ignored here (`Provider.honoured_params` refuses them first).
    """
    native = _native_body(request)
    if native is not None:
        as_it_came = {k: v for k, v in native.items() if k != "stream"}
        return {
            **as_it_came,
            "model": request.model,
            "max_tokens": request.max_tokens,
            **({"stream": True} if stream else {}),
        }
    system, messages = _translate_messages(request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "temperature": min(max(request.temperature, 0.0), 1.0),
    }
    if request.top_p != 1.0:
        body["top_p"] = request.top_p
    if system:
        body["system"] = "\n\n".join(system)
    if request.stop is not None:
        body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        if request.tool_choice is not None:
            choice = _tool_choice(request.tool_choice)
            if choice is not None:
                body["tool_choice"] = choice
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    if request.top_k is not None:
        body["top_k"] = request.top_k
    params = request.params if params is None else params
    if params:
        _translate_params(body, params, has_tools=bool(request.tools))
    if stream:
        body["stream"] = True
    return body


def _native_body(request: ChatRequest) -> Mapping[str, Any] | None:
    return request.native.get(NATIVE_FORMAT) if request.native else None


# The OpenAI params `to_anthropic_body` translates (`top_k` is Anthropic's own, sent through `extra_body`).
TRANSLATED_PARAMS = frozenset(
    {"response_format", "parallel_tool_calls", "top_k", "reasoning_effort", "metadata", "service_tier"}
)
# OpenAI's service_tier → Anthropic's: "default" is the standard capacity only (the others are refused).
_SERVICE_TIERS: Mapping[str, str] = {"auto": "auto", "default": "standard_only"}
# reasoning_effort → thinking budget_tokens (at most max_tokens - 1); minimal and none think not at all.
_THINKING_BUDGETS: Mapping[str, int] = {"low": 1024, "medium": 4096, "high": 16384}
_NO_THINKING = frozenset({"minimal", "none"})
_MIN_THINKING_BUDGET = 1024
_JSON_OBJECT_TOOL = "json_answer"


def answer_tool_name(params: Mapping[str, Any]) -> str | None:
    """The tool that carries a structured answer (`response_format` json_schema or json_object), if any."""
    response_format = params.get("response_format")
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return _JSON_OBJECT_TOOL
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        name = spec.get("name") if isinstance(spec, Mapping) else None
        return name if isinstance(name, str) and name else _JSON_OBJECT_TOOL
    return None


def _answer_tool(response_format: Mapping[str, Any], name: str) -> dict[str, Any]:
    if response_format.get("type") == "json_object":
        return {
            "name": name,
            "description": "Give your answer as a JSON object: the input of this tool.",
            "input_schema": {"type": "object"},
        }
    spec = response_format.get("json_schema")
    spec = spec if isinstance(spec, Mapping) else {}
    schema = spec.get("schema")
    return {
        "name": name,
        "description": spec.get("description") or "Give your answer in this format: the input of this tool.",
        "input_schema": dict(schema) if isinstance(schema, Mapping) else {"type": "object"},
    }


def _offer_answer_tool(body: dict[str, Any], response_format: Mapping[str, Any], name: str) -> None:
    """Anthropic has no JSON mode: the answer is the input of a tool, forced as far as the client's own
    tool_choice allows. No tools of its own (or ``none``): the answer tool is the one to call. ``auto``: a
    tool must be used, the client's or the answer's (``any``), so the answer is a tool call or the JSON.
    ``required`` or a named tool: the client asked for a tool call, which the answer is; no answer tool."""
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind in ("any", "tool"):
        return
    tool = _answer_tool(response_format, name)
    if kind == "none" or not body.get("tools"):
        body["tools"] = [*body.get("tools", ()), tool]
        body["tool_choice"] = {"type": "tool", "name": name}
        return
    body["tools"].append(tool)
    body["tool_choice"] = {"type": "any"}


def _thinking(body: dict[str, Any], effort: Any) -> None:
    """``reasoning_effort`` as a thinking budget, when Anthropic can think within this call (see ``_body``):
    then its sampling is Anthropic's own (temperature, top_p and top_k cannot be set with thinking)."""
    budget = min(_THINKING_BUDGETS.get(effort, 0), body["max_tokens"] - 1)
    choice = body.get("tool_choice")
    forced = isinstance(choice, Mapping) and choice.get("type") in ("any", "tool")
    if budget < _MIN_THINKING_BUDGET or forced:
        return
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    for name in ("temperature", "top_p", "top_k"):
        body.pop(name, None)


def _translate_params(body: dict[str, Any], params: Mapping[str, Any], *, has_tools: bool) -> None:
    response_format = params.get("response_format")
    name = answer_tool_name(params)
    if name is not None and isinstance(response_format, Mapping):
        _offer_answer_tool(body, response_format, name)
    if params.get("parallel_tool_calls") is False and body.get("tools"):
        choice = body.get("tool_choice") or {"type": "auto"}
        if choice.get("type") != "none":
            body["tool_choice"] = {**choice, "disable_parallel_tool_use": True}
    top_k = params.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        body["top_k"] = top_k
    metadata = params.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    if isinstance(user_id, str) and user_id and "metadata" not in body:
        # Anthropic's metadata holds a user id only; the other keys are the client's own labels, not asks.
        body["metadata"] = {"user_id": user_id}
    tier = _SERVICE_TIERS.get(str(params.get("service_tier")))
    if tier is not None:
        body["service_tier"] = tier
    if params.get("reasoning_effort") is not None:
        _thinking(body, params["reasoning_effort"])


def _translate_messages(chat: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The system texts, and the messages of alternating roles (consecutive ones of a role merged)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in chat:
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text:
                system.append(text)
            continue
        role, blocks = _message_blocks(message)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return system, messages


def _message_blocks(message: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The Anthropic role and content blocks of one non-system message."""
    role = message.get("role")
    content = message.get("content")
    if role == "tool":
        result = {
            "type": "tool_result",
            "tool_use_id": str(message.get("tool_call_id") or ""),
            "content": _text_of(content),
        }
        return "user", [result]
    blocks = _content_blocks(content)
    if role != "assistant":
        return "user", blocks
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": _json_object(function.get("arguments")),
            }
        )
    return "assistant", blocks


def _encode(body: Mapping[str, Any]) -> bytes:
    """A request body as compact UTF-8 JSON (as httpx2 encodes `json=` on the sync path)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return str(content)


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            if isinstance(url, str):
                blocks.append({"type": "image", "source": _image_source(url)})
    return blocks


def _image_source(url: str) -> dict[str, str]:
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _json_object(arguments: Any) -> Any:
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not arguments:
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        raise BadRequestError(f"tool call arguments are not valid JSON: {str(arguments)[:100]!r}") from None


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function", tool)
    result: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        result["description"] = function["description"]
    return result


def _tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any] | None:
    if isinstance(choice, str):
        return {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}.get(choice)
    function = choice.get("function")
    if isinstance(function, Mapping) and function.get("name"):
        return {"type": "tool", "name": function["name"]}
    return None
