"""OpenAI-compatible chat completions: OpenAI, Azure OpenAI, OpenRouter, Ollama, LLMaaS, compatible servers.

This module speaks the OpenAI wire format (request bodies, answers, stream chunks, error bodies); the
connections, time budgets and transport failures are `llm.transport`'s.

Requests go through the official `openai` SDK client (auth, Azure deployment URLs, error classes) over the
transport's httpx2 clients, with its retries disabled: `RetryPolicy` decides. Bodies are sent and read as
plain JSON (`cast_to=object`) rather than through the SDK's typed models, which keeps the per-call overhead
to the HTTP exchange.

The async chat calls (`agenerate`, `astream`: the gateway's hot path) skip the SDK's request machinery
for the transport's aiohttp path, which costs a fraction of the CPU per call. They speak the same wire
format and decode errors, bodies and server-sent events exactly as the SDK does (its own SSE decoder is
reused), so every outcome maps to the same `LLMError`. Azure, and base URLs carrying credentials or a
query string, keep the SDK path.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import openai

from ..errors import LLMError, UpstreamServerError, error_for_status
from ..tokens import count_tokens, is_exact
from ..transport import AIOHTTP_ERRORS, HTTPX_ERRORS, AsyncClientCache, StatusError, Transport, sse_events
from ..types import (
    ChatRequest,
    Choice,
    EmbeddingResult,
    GenerationResult,
    ProviderConfig,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .base import Clock, Provider, StreamAccumulator, build_result
from .openai_responses import (
    NATIVE_KINDS,
    RESPONSES_PATH,
    ResponseFailed,
    ResponsesStreamState,
    native_body,
    parse_response,
    responses_body,
)

__all__ = ["KINDS", "OpenAICompatProvider"]

_CHAT_PATH = "/chat/completions"
_EMBEDDINGS_PATH = "/embeddings"
# OpenAI's reasoning models reject `max_tokens` and sampling parameters.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_PARSE_ERRORS = (KeyError, TypeError, AttributeError, IndexError, ValueError)
_SDK_ERRORS = (openai.OpenAIError, *HTTPX_ERRORS)


class _StreamError(Exception):
    """An error object inside a 200 stream, as the SDK's `APIError` would carry it."""

    def __init__(self, message: str, body: object) -> None:
        super().__init__(message)
        self.message = message
        self.body = body


def _status_message(exc: StatusError) -> tuple[str, object]:
    """The SDK's `_make_status_error_from_response`: message "Error code: N[ - message]", body["error"]."""
    message = f"Error code: {exc.status}"
    text = exc.body.decode("utf-8", errors="replace").strip()
    body: object = text
    try:
        body = json.loads(text)
    except Exception:
        pass
    else:
        error = body.get("error", body) if isinstance(body, Mapping) else None
        detail = error.get("message") if isinstance(error, Mapping) else None
        if isinstance(detail, str) and detail:
            message += f" - {detail}"
    data = body.get("error", body) if isinstance(body, Mapping) else body
    return message, data


async def _forget(client: object) -> None:
    """An SDK client need not be closed: the transport closes the HTTP client under it."""


class OpenAICompatProvider(Provider):
    """Chat, streaming and embeddings over the OpenAI wire format.

    Timeouts: `connect_timeout_s` for connecting, `timeout_s` (or the request's `timeout_s`) as the total
    budget of a call. `first_token_timeout_s` bounds the wait for a stream's first delta: exactly in
    `astream`; in the sync `stream` it is the socket read timeout of the whole stream, so it also bounds
    the gaps between chunks.
    """

    @classmethod
    def check_config(cls, config: ProviderConfig) -> None:
        if config.kind == "azure" and not config.api_version:
            raise ValueError(f"azure provider {config.name!r} needs api_version")

    def __init__(self, config: ProviderConfig, *, clock: Clock = time.monotonic) -> None:
        super().__init__(config, clock=clock)
        # The SDK's own clients follow redirects; the SDK sends its headers itself.
        self._http = Transport(config, follow_redirects=True)
        # Models whose server rejected `stream_options` (once); their usage is then counted locally.
        self._no_stream_options: set[str] = set()
        self._sync: openai.OpenAI | None = None
        self._sync_lock = threading.Lock()
        self._async: AsyncClientCache[openai.AsyncOpenAI] = AsyncClientCache(self._make_async)
        # The direct (aiohttp) path, where it speaks exactly as the SDK would.
        parts = urlsplit(config.base_url)
        direct = config.kind != "azure" and not (parts.username or parts.password or parts.query or parts.fragment)
        self._chat_url = config.base_url.rstrip("/") + _CHAT_PATH if direct else None
        api_key = config.api_key or ("ollama" if config.kind == "ollama" else "no-key")
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"AsyncOpenAI/Python {openai.__version__}",
            "Authorization": f"Bearer {api_key}",
            **config.headers,
        }

    # -- clients ---------------------------------------------------------------------------------------

    def _client_options(self) -> dict[str, Any]:
        config = self.config
        api_key = config.api_key or ("ollama" if config.kind == "ollama" else "no-key")
        options: dict[str, Any] = {
            "api_key": api_key,
            "max_retries": 0,
            "timeout": self._http.timeout,
            "default_headers": dict(config.headers) or None,
        }
        if config.kind == "azure":
            options["api_version"] = config.api_version
            if config.base_url.rstrip("/").endswith("/openai"):
                options["base_url"] = config.base_url
            else:
                options["azure_endpoint"] = config.base_url
        else:
            options["base_url"] = config.base_url
        return options

    def _make_sync(self) -> openai.OpenAI:
        http_client = self._http.client()
        if self.config.kind == "azure":
            return openai.AzureOpenAI(http_client=http_client, **self._client_options())
        return openai.OpenAI(http_client=http_client, **self._client_options())

    def _make_async(self) -> openai.AsyncOpenAI:
        http_client = self._http.async_client()
        if self.config.kind == "azure":
            return openai.AsyncAzureOpenAI(http_client=http_client, **self._client_options())
        return openai.AsyncOpenAI(http_client=http_client, **self._client_options())

    def _sync_client(self) -> openai.OpenAI:
        client = self._sync
        if client is None:
            with self._sync_lock:
                client = self._sync
                if client is None:
                    client = self._sync = self._make_sync()
        return client

    def close(self) -> None:
        with self._sync_lock:
            self._sync = None
        self._http.close()

    async def aclose(self) -> None:
        self.close()
        await self._async.aclose_current(_forget)
        await self._http.aclose()

    def _direct_error(
        self, exc: BaseException, model: str, *, in_body: bool = False, first_token_pending: bool = False
    ) -> LLMError:
        """Our error for a failure on the direct path (the same as `_map_error` for the SDK's)."""
        if isinstance(exc, StatusError):
            message, body = _status_message(exc)
            return self._error_from_body(body, model, status=exc.status, headers=exc.headers, fallback=message)
        if isinstance(exc, _StreamError):
            return self._error_from_body(exc.body, model, fallback=exc.message)
        return self._http.error(exc, model, in_body=in_body, first_token_pending=first_token_pending)

    async def _adirect_generate(self, request: ChatRequest) -> GenerationResult:
        assert self._chat_url is not None
        start = self._clock()
        try:
            async with asyncio.timeout(self._http.total_timeout(request.timeout_s)):
                response = await self._http.post(
                    self._chat_url,
                    json.dumps(self._body(request, stream=False)).encode(),
                    self._headers,
                    timeout_s=request.timeout_s,
                )
                try:
                    raw = await response.read()
                except AIOHTTP_ERRORS as exc:
                    raise self._direct_error(exc, request.model, in_body=True) from exc
                finally:
                    response.release()
        except TimeoutError as exc:
            raise self._timeout_error("total", request.model) from exc
        except (StatusError, *AIOHTTP_ERRORS) as exc:
            raise self._direct_error(exc, request.model) from exc
        # As the SDK does: JSON only when the server says so, else the text (which is not an object).
        content_type = response.headers.get("content-type", "*").split(";")[0]
        data: object
        if content_type.endswith("json"):
            try:
                data = json.loads(raw)
            except ValueError as exc:
                raise self._direct_error(exc, request.model) from exc
        else:
            data = raw.decode("utf-8", errors="replace")
        return self._parse_completion(data, request, start, self._clock())

    async def _adirect_open_stream(self, request: ChatRequest) -> aiohttp.ClientResponse:
        assert self._chat_url is not None
        try:
            return await self._http.post(
                self._chat_url,
                json.dumps(self._body(request, stream=True)).encode(),
                self._headers,
                timeout_s=request.timeout_s,
            )
        except StatusError as exc:
            if exc.status != 400 or request.model in self._no_stream_options:
                raise
            message, body = _status_message(exc)
            if "stream_options" not in f"{message} {body}":
                raise
            self._no_stream_options.add(request.model)
            return await self._http.post(
                self._chat_url,
                json.dumps(self._body(request, stream=True)).encode(),
                self._headers,
                timeout_s=request.timeout_s,
            )

    @staticmethod
    async def _sse_chunks(response: aiohttp.ClientResponse) -> AsyncGenerator[object, None]:
        """The stream's JSON chunks, decoded as the SDK's `AsyncStream` does (errors raise `_StreamError`)."""
        events = sse_events(response)
        async for sse in events:
            if sse.data.startswith("[DONE]"):
                async for _ in events:  # read to the end, so the connection goes back to the pool
                    pass
                break
            data = sse.json()
            if isinstance(data, Mapping) and data.get("error"):
                error = data.get("error")
                message = error.get("message") if isinstance(error, Mapping) else None
                if not message or not isinstance(message, str):
                    message = "An error occurred during streaming"
                raise _StreamError(message, data["error"])
            yield data

    async def _adirect_stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        start = self._clock()
        first_deadline, total_deadline = self._http.stream_deadlines(request.timeout_s)
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await self._adirect_open_stream(request)
        except TimeoutError as exc:
            raise self._deadline_error(first_deadline, total_deadline, request.model) from exc
        except (StatusError, *AIOHTTP_ERRORS) as exc:
            pending = first_deadline < total_deadline
            raise self._direct_error(exc, request.model, first_token_pending=pending) from exc
        acc = StreamAccumulator()
        iterator = self._sse_chunks(response)
        try:
            while True:
                deadline = first_deadline if acc.first_token_at is None else total_deadline
                try:
                    # The timeout wraps only the read, never a `yield` (see `astream`).
                    async with asyncio.timeout_at(deadline):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    if acc.first_token_at is None:
                        raise self._deadline_error(first_deadline, total_deadline, request.model) from exc
                    raise self._timeout_error("total", request.model) from exc
                except (_StreamError, *AIOHTTP_ERRORS) as exc:
                    pending = first_deadline < total_deadline and acc.first_token_at is None
                    raise self._direct_error(exc, request.model, in_body=True, first_token_pending=pending) from exc
                for event in self._apply_chunk(chunk, acc, request.model):
                    yield event
        finally:
            await iterator.aclose()
            response.release()
        yield self._finish_stream(acc, request, start)

    # -- request building ------------------------------------------------------------------------------

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        if request.top_k is not None:
            # The Messages API's top_k has no chat-completions field (OpenAI answers 400 to one): refused,
            # or dropped. A chat client's own `top_k` body field (for a vLLM upstream) is one of `params`.
            self.unhonoured(request, "top_k")
        body: dict[str, Any] = {"model": request.model, "messages": request.messages}
        if self.config.kind == "openai" and request.model.startswith(_REASONING_PREFIXES):
            body["max_completion_tokens"] = request.max_tokens
        else:
            body["max_tokens"] = request.max_tokens
            body["temperature"] = request.temperature
            body["top_p"] = request.top_p
        if request.stop is not None:
            body["stop"] = request.stop
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.user is not None:
            body["user"] = request.user
        if stream:
            body["stream"] = True
            if request.model not in self._no_stream_options:
                body["stream_options"] = {"include_usage": True}
        if request.params:
            # The fields the gateway does not interpret go as they came; the ones it built above win.
            body = {**request.params, **body}
        return body

    def _options(self, request: ChatRequest, *, stream: bool = False) -> openai.RequestOptions:
        return {"timeout": self._http.httpx_timeout(request.timeout_s, stream=stream)}

    # -- generate --------------------------------------------------------------------------------------

    def generate(self, request: ChatRequest) -> GenerationResult:
        start = self._clock()
        try:
            data = self._sync_client().post(
                _CHAT_PATH,
                cast_to=object,
                body=self._body(request, stream=False),
                options=self._options(request),
            )
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, request.model) from exc
        return self._parse_completion(data, request, start, self._clock())

    async def agenerate(self, request: ChatRequest) -> GenerationResult:
        if (native := self._native(request)) is not None:
            return await self._aresponses_generate(request, native)
        if self._chat_url is not None:
            return await self._adirect_generate(request)
        start = self._clock()
        try:
            async with asyncio.timeout(self._http.total_timeout(request.timeout_s)):
                data = await self._async.get().post(
                    _CHAT_PATH,
                    cast_to=object,
                    body=self._body(request, stream=False),
                    options=self._options(request),
                )
        except TimeoutError as exc:
            raise self._timeout_error("total", request.model) from exc
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, request.model) from exc
        return self._parse_completion(data, request, start, self._clock())

    def _parse_completion(self, data: object, request: ChatRequest, start: float, end: float) -> GenerationResult:
        if not isinstance(data, dict):
            raise self._invalid("the upstream answered with a body that is not a JSON object", request.model)
        if "choices" not in data and isinstance(data.get("error"), dict):
            # Some gateways (OpenRouter) report upstream failures in a 200 body.
            raise self._error_from_body(data["error"], request.model)
        try:
            raw_choices = data["choices"]
            parsed = sorted((_parse_choice(raw, i) for i, raw in enumerate(raw_choices)), key=lambda c: c.index)
            first = parsed[0]
            usage = _parse_usage(data.get("usage"))
            model = data.get("model")
            fingerprint = data.get("system_fingerprint")
        except _PARSE_ERRORS as exc:
            raise self._invalid(f"malformed chat completion: {exc!r}", request.model) from exc
        return build_result(
            provider=self.name,
            request=request,
            text=first.text,
            finish_reason=first.finish_reason,
            tool_calls=first.tool_calls,
            usage=usage,
            model=model if isinstance(model, str) else None,
            start=start,
            first_token_at=None,
            end=end,
            logprobs=first.logprobs,
            refusal=first.refusal,
            system_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            choices=tuple(parsed) if len(parsed) > 1 else (),
        )

    # -- stream ----------------------------------------------------------------------------------------

    def stream(self, request: ChatRequest) -> Generator[StreamEvent, None, None]:
        start = self._clock()
        client = self._sync_client()
        options = self._options(request, stream=True)
        first_token_bound = self._http.first_token_binds(request.timeout_s)
        try:
            try:
                chunks = client.post(
                    _CHAT_PATH,
                    cast_to=object,
                    body=self._body(request, stream=True),
                    options=options,
                    stream=True,
                    stream_cls=openai.Stream[object],
                )
            except openai.BadRequestError as exc:
                if request.model in self._no_stream_options or not self._rejects_stream_options(exc):
                    raise
                self._no_stream_options.add(request.model)
                chunks = client.post(
                    _CHAT_PATH,
                    cast_to=object,
                    body=self._body(request, stream=True),
                    options=options,
                    stream=True,
                    stream_cls=openai.Stream[object],
                )
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, request.model, first_token_pending=first_token_bound) from exc
        acc = StreamAccumulator()
        try:
            iterator = iter(chunks)
            while True:
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                except _SDK_ERRORS as exc:
                    pending = first_token_bound and acc.first_token_at is None
                    raise self._map_error(exc, request.model, in_body=True, first_token_pending=pending) from exc
                yield from self._apply_chunk(chunk, acc, request.model)
        finally:
            chunks.close()
        yield self._finish_stream(acc, request, start)

    def astream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        if (native := self._native(request)) is not None:
            return self._aresponses_stream(request, native)
        if self._chat_url is not None:
            return self._adirect_stream(request)
        return self._sdk_astream(request)

    async def _sdk_astream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        start = self._clock()
        first_deadline, total_deadline = self._http.stream_deadlines(request.timeout_s)
        client = self._async.get()
        options = self._options(request)
        try:
            async with asyncio.timeout_at(first_deadline):
                try:
                    chunks = await client.post(
                        _CHAT_PATH,
                        cast_to=object,
                        body=self._body(request, stream=True),
                        options=options,
                        stream=True,
                        stream_cls=openai.AsyncStream[object],
                    )
                except openai.BadRequestError as exc:
                    if request.model in self._no_stream_options or not self._rejects_stream_options(exc):
                        raise
                    self._no_stream_options.add(request.model)
                    chunks = await client.post(
                        _CHAT_PATH,
                        cast_to=object,
                        body=self._body(request, stream=True),
                        options=options,
                        stream=True,
                        stream_cls=openai.AsyncStream[object],
                    )
        except TimeoutError as exc:
            raise self._deadline_error(first_deadline, total_deadline, request.model) from exc
        except _SDK_ERRORS as exc:
            pending = first_deadline < total_deadline
            raise self._map_error(exc, request.model, first_token_pending=pending) from exc
        acc = StreamAccumulator()
        iterator = chunks.__aiter__()
        try:
            async with aclosing(self._payloads(iterator, acc, first_deadline, total_deadline, request.model)) as reads:
                async for chunk in reads:
                    for event in self._apply_chunk(chunk, acc, request.model):
                        yield event
        finally:
            await chunks.close()
        yield self._finish_stream(acc, request, start)

    # -- the Responses API, as it came (openai_responses) ---------------------------------------------------

    def _native(self, request: ChatRequest) -> Mapping[str, Any] | None:
        """The Responses body to send as it came, when this provider serves that API (the async path: the
        gateway's; a sync caller gets the chat translation)."""
        body = native_body(request)
        return body if body is not None and self.config.kind in NATIVE_KINDS else None

    async def _aresponses_generate(self, request: ChatRequest, native: Mapping[str, Any]) -> GenerationResult:
        start = self._clock()
        try:
            async with asyncio.timeout(self._http.total_timeout(request.timeout_s)):
                data = await self._async.get().post(
                    RESPONSES_PATH,
                    cast_to=object,
                    body=responses_body(native, request, stream=False),
                    options=self._options(request),
                )
        except TimeoutError as exc:
            raise self._timeout_error("total", request.model) from exc
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, request.model) from exc
        if not isinstance(data, dict):
            raise self._invalid("the upstream answered with a body that is not a JSON object", request.model)
        if data.get("status") == "failed":
            raise self._error_from_body(data.get("error"), request.model, fallback="the upstream's response failed")
        try:
            text, calls, finish_reason, usage = parse_response(data)
        except _PARSE_ERRORS as exc:
            raise self._invalid(f"malformed response: {exc!r}", request.model) from exc
        model = data.get("model")
        result = build_result(
            provider=self.name,
            request=request,
            text=text,
            finish_reason=finish_reason,
            tool_calls=calls,
            usage=usage,
            model=model if isinstance(model, str) else None,
            start=start,
            first_token_at=None,
            end=self._clock(),
        )
        return replace(result, native=data)

    async def _aresponses_stream(
        self, request: ChatRequest, native: Mapping[str, Any]
    ) -> AsyncGenerator[StreamEvent, None]:
        start = self._clock()
        first_deadline, total_deadline = self._http.stream_deadlines(request.timeout_s)
        try:
            async with asyncio.timeout_at(first_deadline):
                events = await self._async.get().post(
                    RESPONSES_PATH,
                    cast_to=object,
                    body=responses_body(native, request, stream=True),
                    options=self._options(request),
                    stream=True,
                    stream_cls=openai.AsyncStream[object],
                )
        except TimeoutError as exc:
            raise self._deadline_error(first_deadline, total_deadline, request.model) from exc
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, request.model, first_token_pending=first_deadline < total_deadline) from exc
        acc = StreamAccumulator()
        state = ResponsesStreamState()
        iterator = events.__aiter__()
        try:
            async with aclosing(self._payloads(iterator, acc, first_deadline, total_deadline, request.model)) as reads:
                async for payload in reads:
                    event = self._apply_response_event(payload, acc, state, request.model)
                    if event is not None:
                        yield event
        finally:
            await events.close()
        if state.final is None:
            raise self._invalid("the stream ended before the response did", request.model)
        yield state.finish(acc.done_event(provider=self.name, request=request, start=start, end=self._clock()))

    async def _payloads(
        self,
        iterator: AsyncIterator[object],
        acc: StreamAccumulator,
        first_deadline: float,
        total_deadline: float,
        model: str,
    ) -> AsyncGenerator[object, None]:
        """Each payload of an SDK stream (chat chunks, Responses events), each read under its deadline: the
        first token's until ``acc`` has one, then the whole call's. The timeout wraps only the read, never a
        ``yield``: the consumer's own awaits between payloads must not be cancelled by our deadline."""
        while True:
            deadline = first_deadline if acc.first_token_at is None else total_deadline
            try:
                async with asyncio.timeout_at(deadline):
                    payload = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                if acc.first_token_at is None:
                    raise self._deadline_error(first_deadline, total_deadline, model) from exc
                raise self._timeout_error("total", model) from exc
            except _SDK_ERRORS as exc:
                pending = first_deadline < total_deadline and acc.first_token_at is None
                raise self._map_error(exc, model, in_body=True, first_token_pending=pending) from exc
            yield payload

    def _apply_response_event(
        self, payload: object, acc: StreamAccumulator, state: ResponsesStreamState, model: str
    ) -> StreamEvent | None:
        if not isinstance(payload, dict):
            raise self._invalid("the upstream sent an event that is not a JSON object", model)
        try:
            event = state.apply(payload, acc)
        except ResponseFailed as exc:  # an error event, or a failed response: the upstream's own failure
            raise UpstreamServerError(self._redact(str(exc)), provider=self.name, model=model) from exc
        except _PARSE_ERRORS as exc:
            raise self._invalid(f"malformed response event: {exc!r}", model) from exc
        if event is not None and acc.first_token_at is None:
            acc.first_token_at = self._clock()
        return event

    def _apply_chunk(self, chunk: object, acc: StreamAccumulator, model: str) -> tuple[StreamEvent, ...]:
        """Fold one SSE chunk into `acc`; the delta events to yield (one per choice that carried something)."""
        if not isinstance(chunk, dict):
            raise self._invalid("the upstream sent a stream chunk that is not a JSON object", model)
        try:
            if chunk.get("usage"):
                acc.usage = _parse_usage(chunk["usage"])
            upstream_model = chunk.get("model")
            if upstream_model and isinstance(upstream_model, str):
                acc.model = upstream_model
            fingerprint = chunk.get("system_fingerprint")
            if fingerprint and isinstance(fingerprint, str):
                acc.system_fingerprint = fingerprint
            else:
                fingerprint = None
            choices = chunk.get("choices")
            if not choices:
                return ()
            if len(choices) == 1:  # every chunk, unless an upstream packs several choices into one
                event = self._apply_choice(choices[0], acc, fingerprint)
                return () if event is None else (event,)
            events = [self._apply_choice(choice, acc, fingerprint) for choice in choices]
            return tuple(event for event in events if event is not None)
        except _PARSE_ERRORS as exc:
            raise self._invalid(f"malformed stream chunk: {exc!r}", model) from exc

    def _apply_choice(self, choice: Any, acc: StreamAccumulator, fingerprint: str | None) -> StreamEvent | None:
        index = int(choice.get("index") or 0)
        parts = acc.choice_parts(index)
        finish_reason = choice.get("finish_reason")
        if finish_reason:
            parts.finish_reason = finish_reason
        logprobs = choice.get("logprobs")
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        raw_calls = delta.get("tool_calls")
        refusal = delta.get("refusal") or ""
        if not content and not raw_calls and not refusal and logprobs is None:
            return None
        if acc.first_token_at is None:
            acc.first_token_at = self._clock()
        if content:
            parts.parts.append(content)
        if refusal:
            parts.refusal.append(refusal)
        if logprobs is not None:
            parts.add_logprobs(logprobs)
        calls: list[ToolCallDelta] = []
        for raw in raw_calls or ():
            function = raw.get("function") or {}
            call = ToolCallDelta(
                index=int(raw.get("index", 0)),
                id=raw.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
            parts.add_tool_call(call.index, call.id, call.name, call.arguments)
            calls.append(call)
        return StreamEvent(
            type="delta",
            content=content,
            tool_calls=tuple(calls),
            finish_reason=finish_reason,
            index=index,
            logprobs=logprobs,
            refusal=refusal,
            system_fingerprint=fingerprint,
        )

    def _finish_stream(self, acc: StreamAccumulator, request: ChatRequest, start: float) -> StreamEvent:
        if acc.finish_reason is None:
            raise self._invalid("the stream ended before a finish_reason", request.model)
        return acc.done_event(provider=self.name, request=request, start=start, end=self._clock())

    @staticmethod
    def _rejects_stream_options(exc: openai.BadRequestError) -> bool:
        return "stream_options" in f"{exc.message} {exc.body}"

    # -- embeddings ------------------------------------------------------------------------------------

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        try:
            data = self._sync_client().post(_EMBEDDINGS_PATH, cast_to=object, body=_embed_body(model, inputs))
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, model) from exc
        return self._parse_embeddings(data, model, inputs)

    async def aembed(self, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        try:
            async with asyncio.timeout(self.config.timeout_s):
                data = await self._async.get().post(_EMBEDDINGS_PATH, cast_to=object, body=_embed_body(model, inputs))
        except TimeoutError as exc:
            raise self._timeout_error("total", model) from exc
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, model) from exc
        return self._parse_embeddings(data, model, inputs)

    def _parse_embeddings(self, data: object, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        if not isinstance(data, dict):
            raise self._invalid("the upstream answered with a body that is not a JSON object", model)
        try:
            rows = sorted(data["data"], key=lambda row: int(row.get("index", 0)))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
            if len(vectors) != len(inputs):
                raise ValueError(f"{len(vectors)} vectors for {len(inputs)} inputs")
            usage = _parse_usage(data.get("usage"))
            upstream_model = data.get("model")
        except _PARSE_ERRORS as exc:
            raise self._invalid(f"malformed embeddings response: {exc!r}", model) from exc
        if usage is None:
            prompt = sum(count_tokens(text, model) for text in inputs)
            usage = Usage(prompt, 0, prompt, estimated=not is_exact(model))
        return EmbeddingResult(
            vectors=vectors, model=upstream_model if isinstance(upstream_model, str) else model, usage=usage
        )

    # -- errors ----------------------------------------------------------------------------------------

    def _map_error(
        self, exc: Exception, model: str, *, in_body: bool = False, first_token_pending: bool = False
    ) -> LLMError:
        """Our error for an SDK exception (see `Transport.error` for the flags)."""
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, openai.APIStatusError):
            return self._error_from_body(
                exc.body, model, status=exc.status_code, headers=exc.response.headers, fallback=exc.message
            )
        if isinstance(exc, openai.APIConnectionError):
            # APITimeoutError included: the SDK chains the HTTP client's exception as the cause.
            cause = exc.__cause__ or (TimeoutError() if isinstance(exc, openai.APITimeoutError) else exc)
            return self._http.error(cause, model, in_body=in_body, first_token_pending=first_token_pending)
        if isinstance(exc, openai.APIResponseValidationError):
            return self._invalid(f"invalid response: {exc.message}", model)
        if isinstance(exc, openai.APIError):
            # An error object inside a 200 stream.
            return self._error_from_body(exc.body, model, fallback=exc.message)
        if isinstance(exc, openai.OpenAIError):
            return LLMError(self._redact(f"{type(exc).__name__}: {exc}"), provider=self.name, model=model)
        return self._http.error(exc, model, in_body=in_body, first_token_pending=first_token_pending)

    def _error_from_body(
        self,
        body: object,
        model: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        fallback: str = "",
    ) -> LLMError:
        message, code = fallback, None
        if isinstance(body, dict):
            message = str(body.get("message") or fallback)
            raw_code = body.get("code")
            code = str(raw_code) if raw_code is not None else None
            if status is None and isinstance(raw_code, int) and 400 <= raw_code <= 599:
                status = raw_code
        message = self._redact(message or "upstream error")
        if status is None:
            return UpstreamServerError(message, provider=self.name, model=model)
        return error_for_status(status, message, headers=headers, error_code=code, provider=self.name, model=model)

    def _deadline_error(self, first_deadline: float, total_deadline: float, model: str) -> LLMError:
        return self._timeout_error("first_token" if first_deadline < total_deadline else "total", model)


# Every kind that speaks the OpenAI wire format; `azure` and `ollama` differ in URL, auth and key default.
KINDS: Mapping[str, type[Provider]] = {
    kind: OpenAICompatProvider for kind in ("openai", "azure", "ollama", "openrouter", "llmaas", "openai_compatible")
}


def _parse_choice(raw: Any, position: int) -> Choice:
    """One choice of a chat completion (its `index` defaults to its position)."""
    message = raw["message"]
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise TypeError("content is not a string")
    tool_calls = tuple(
        ToolCall(
            id=str(call.get("id") or ""),
            name=call["function"]["name"],
            arguments=call["function"].get("arguments") or "{}",
        )
        for call in message.get("tool_calls") or ()
    )
    refusal = message.get("refusal")
    index = raw.get("index")
    return Choice(
        index=index if isinstance(index, int) else position,
        text=text,
        finish_reason=raw.get("finish_reason"),
        tool_calls=tool_calls,
        logprobs=raw.get("logprobs"),
        refusal=refusal if isinstance(refusal, str) else None,
    )


def _parse_usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens")
    completion = raw.get("completion_tokens") or 0
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = raw.get("total_tokens")
    return Usage(prompt, completion, total if isinstance(total, int) else prompt + completion)


def _embed_body(model: str, inputs: Sequence[str]) -> dict[str, Any]:
    return {
        "model": model,
        "input": cast(list[str], inputs if isinstance(inputs, list) else list(inputs)),
        "encoding_format": "float",
    }
