"""`LLMHandler`: one entry point for every configured provider, with retries.

Model ids are `"<provider>/<name>"`, split on the first "/" (`openrouter/meta-llama/llama-3-8b` is model
`meta-llama/llama-3-8b` at provider `openrouter`). Configuration is passed in; nothing is read from the
environment. Every failure is an `LLMError`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from . import tokens
from .errors import BadRequestError, LLMError, ProviderNotConfiguredError
from .providers import Provider, create_provider
from .retry import RetryPolicy
from .types import ChatRequest, EmbeddingResult, GenerationResult, ProviderConfig, StreamEvent

__all__ = ["LLMHandler", "split_model_id"]

Message = Mapping[str, Any]
_DEFAULT_RETRY = RetryPolicy()
_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})  # shared by every call without params: never written


def split_model_id(model: str) -> tuple[str, str]:
    """`("provider", "name")` for `"provider/name"`; ProviderNotConfiguredError when there is no provider."""
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        raise ProviderNotConfiguredError(
            f"model id {model!r} does not name a provider: expected '<provider>/<model>'", model=model
        )
    return provider, name


class LLMHandler:
    """Generation, streaming and embeddings across providers; thread-safe, usable from any event loop.

    Providers (and their connection pools) are created on first use and reused. `retry` is the default
    policy; each call may pass its own (`RetryPolicy(max_attempts=1)` disables retries). `sleep`,
    `async_sleep`, `clock` and `rng` are injectable so tests neither wait nor depend on chance.
    Only retryable errors are retried, and a stream only before its first delta was yielded.
    """

    def __init__(
        self,
        providers: Iterable[ProviderConfig] | Mapping[str, ProviderConfig],
        *,
        retry: RetryPolicy = _DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        configs: dict[str, ProviderConfig] = {}
        if isinstance(providers, Mapping):
            for key, config in providers.items():
                if key != config.name:
                    raise ValueError(f"provider key {key!r} differs from its config name {config.name!r}")
                configs[key] = config
        else:
            for config in providers:
                if config.name in configs:
                    raise ValueError(f"provider {config.name!r} is configured twice")
                configs[config.name] = config
        self._configs = configs
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._retry = retry
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()

    def __repr__(self) -> str:
        return f"LLMHandler(providers={sorted(self._configs)!r})"

    @property
    def provider_names(self) -> tuple[str, ...]:
        return tuple(self._configs)

    def provider(self, name: str) -> Provider:
        """The provider called `name`, created on first use; ProviderNotConfiguredError if unknown."""
        provider = self._providers.get(name)
        if provider is not None:
            return provider
        config = self._configs.get(name)
        if config is None:
            raise ProviderNotConfiguredError(f"no provider named {name!r} is configured", provider=name)
        with self._lock:
            provider = self._providers.get(name)
            if provider is None:
                provider = self._providers[name] = create_provider(config, clock=self._clock)
        return provider

    # -- generation ------------------------------------------------------------------------------------

    def generate(
        self,
        model: str,
        messages: Sequence[Message] | None = None,
        *,
        prompt: str | None = None,
        system: str | None = None,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        user: str | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> GenerationResult:
        """One completion. Exactly one of `messages` / `prompt` (with an optional `system`).

        `params`: the other OpenAI chat-completions fields (`response_format`, `seed`, `n`, ...), see
        `ChatRequest.params`."""
        provider, request = self._prepare(
            model,
            messages,
            prompt,
            system,
            temperature,
            top_p,
            max_tokens,
            stop,
            tools,
            tool_choice,
            user,
            timeout_s,
            params,
        )
        policy = retry or self._retry
        attempt = 1
        while True:
            try:
                return provider.generate(request)
            except LLMError as error:
                if not policy.should_retry(attempt, error):
                    raise
                self._sleep(policy.delay_for(attempt, error, self._rng))
                attempt += 1

    async def agenerate(
        self,
        model: str,
        messages: Sequence[Message] | None = None,
        *,
        prompt: str | None = None,
        system: str | None = None,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        user: str | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        params: Mapping[str, Any] | None = None,
        native: Mapping[str, Mapping[str, Any]] | None = None,
        top_k: int | None = None,
    ) -> GenerationResult:
        """`generate` for async callers; `native` and `top_k` as `ChatRequest` says."""
        provider, request = self._prepare(
            model,
            messages,
            prompt,
            system,
            temperature,
            top_p,
            max_tokens,
            stop,
            tools,
            tool_choice,
            user,
            timeout_s,
            params,
            native=native,
            top_k=top_k,
        )
        policy = retry or self._retry
        attempt = 1
        while True:
            try:
                return await provider.agenerate(request)
            except LLMError as error:
                if not policy.should_retry(attempt, error):
                    raise
                await self._async_sleep(policy.delay_for(attempt, error, self._rng))
                attempt += 1

    def stream(
        self,
        model: str,
        messages: Sequence[Message] | None = None,
        *,
        prompt: str | None = None,
        system: str | None = None,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        user: str | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Generator[StreamEvent, None, None]:
        """Delta events, then one `done` event with the full result.

        Arguments are checked now; the request starts on the first `next()`. Close the iterator (or
        exhaust it) to release the connection.
        """
        provider, request = self._prepare(
            model,
            messages,
            prompt,
            system,
            temperature,
            top_p,
            max_tokens,
            stop,
            tools,
            tool_choice,
            user,
            timeout_s,
            params,
        )
        policy = retry or self._retry
        if policy.max_attempts == 1:
            return provider.stream(request)
        return self._retrying_stream(provider, request, policy)

    def astream(
        self,
        model: str,
        messages: Sequence[Message] | None = None,
        *,
        prompt: str | None = None,
        system: str | None = None,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        user: str | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        params: Mapping[str, Any] | None = None,
        native: Mapping[str, Mapping[str, Any]] | None = None,
        top_k: int | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """`stream` for async callers: `async for event in handler.astream(...)`.

        Use `contextlib.aclosing` when you may stop early, so the connection is released at once.
        """
        provider, request = self._prepare(
            model,
            messages,
            prompt,
            system,
            temperature,
            top_p,
            max_tokens,
            stop,
            tools,
            tool_choice,
            user,
            timeout_s,
            params,
            native=native,
            top_k=top_k,
        )
        policy = retry or self._retry
        if policy.max_attempts == 1:
            return provider.astream(request)
        return self._retrying_astream(provider, request, policy)

    def _retrying_stream(
        self, provider: Provider, request: ChatRequest, policy: RetryPolicy
    ) -> Generator[StreamEvent, None, None]:
        attempt = 1
        while True:
            events = provider.stream(request)
            started = False
            try:
                for event in events:
                    started = True
                    yield event
                return
            except LLMError as error:
                if started or not policy.should_retry(attempt, error):
                    raise
                delay = policy.delay_for(attempt, error, self._rng)
            finally:
                events.close()
            self._sleep(delay)
            attempt += 1

    async def _retrying_astream(
        self, provider: Provider, request: ChatRequest, policy: RetryPolicy
    ) -> AsyncGenerator[StreamEvent, None]:
        attempt = 1
        while True:
            events = provider.astream(request)
            started = False
            try:
                async for event in events:
                    started = True
                    yield event
                return
            except LLMError as error:
                if started or not policy.should_retry(attempt, error):
                    raise
                delay = policy.delay_for(attempt, error, self._rng)
            finally:
                await events.aclose()
            await self._async_sleep(delay)
            attempt += 1

    # -- embeddings and tokens -------------------------------------------------------------------------

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        """Vectors for `inputs`, in order (OpenAI-compatible providers only)."""
        provider, name = self._resolve(model)
        return provider.embed(name, _texts(inputs))

    async def aembed(self, model: str, inputs: Sequence[str]) -> EmbeddingResult:
        provider, name = self._resolve(model)
        return await provider.aembed(name, _texts(inputs))

    def count_tokens(self, text: str, model: str | None = None) -> int:
        """Offline count; exact for OpenAI models, a cl100k_base estimate otherwise (see `llm.tokens`)."""
        return tokens.count_tokens(text, model)

    # -- lifecycle -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync connection pools (async pools close with `aclose`)."""
        for provider in self._created():
            provider.close()

    async def aclose(self) -> None:
        """Close the sync pools and the async pools of the running event loop."""
        for provider in self._created():
            await provider.aclose()

    def __enter__(self) -> LLMHandler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> LLMHandler:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _created(self) -> list[Provider]:
        with self._lock:
            return list(self._providers.values())

    # -- helpers ---------------------------------------------------------------------------------------

    def _resolve(self, model: str) -> tuple[Provider, str]:
        provider_name, name = split_model_id(model)
        provider = self._providers.get(provider_name)
        if provider is None:
            if provider_name not in self._configs:
                raise ProviderNotConfiguredError(
                    f"model {model!r} names provider {provider_name!r}, which is not configured",
                    provider=provider_name,
                    model=name,
                )
            provider = self.provider(provider_name)
        return provider, name

    def _prepare(
        self,
        model: str,
        messages: Sequence[Message] | None,
        prompt: str | None,
        system: str | None,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: str | Sequence[str] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: str | Mapping[str, Any] | None,
        user: str | None,
        timeout_s: float | None,
        params: Mapping[str, Any] | None,
        *,
        native: Mapping[str, Mapping[str, Any]] | None = None,
        top_k: int | None = None,
    ) -> tuple[Provider, ChatRequest]:
        provider, name = self._resolve(model)
        if (messages is None) == (prompt is None):
            raise BadRequestError("pass exactly one of messages or prompt", provider=provider.name, model=name)
        if prompt is not None:
            chat: Sequence[Message] = [{"role": "user", "content": prompt}]
            if system is not None:
                chat = [{"role": "system", "content": system}, chat[0]]
        else:
            assert messages is not None
            if not messages:
                raise BadRequestError("messages must not be empty", provider=provider.name, model=name)
            # Passed through as they are (no copy) unless a system prompt is added.
            chat = messages if isinstance(messages, list | tuple) else list(messages)
            if system is not None:
                chat = [{"role": "system", "content": system}, *chat]
        if max_tokens < 1:
            raise BadRequestError("max_tokens must be at least 1", provider=provider.name, model=name)
        if timeout_s is not None and timeout_s <= 0:
            raise BadRequestError("timeout_s must be positive", provider=provider.name, model=name)
        request = ChatRequest(
            model=name,
            messages=chat,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=stop,
            tools=tools,
            tool_choice=tool_choice,
            user=user,
            timeout_s=timeout_s,
            params=params or _NO_PARAMS,
            native=native,
            top_k=top_k,
        )
        return provider, request


def _texts(inputs: Sequence[str]) -> list[str]:
    if isinstance(inputs, str):
        return [inputs]
    return inputs if isinstance(inputs, list) else list(inputs)
