"""Error mapping: each error class, produced by the fake upstream over real HTTP and mapped by the handler."""

from __future__ import annotations

import asyncio
import pickle
import socket
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import pytest

from llm import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    InvalidResponseError,
    LLMConnectionError,
    LLMError,
    LLMHandler,
    LLMTimeoutError,
    NotFoundError,
    ProviderConfig,
    ProviderNotConfiguredError,
    RateLimitedError,
    RetryPolicy,
    StreamEvent,
    UpstreamServerError,
)
from llm.errors import error_for_status, parse_retry_after

SECRET = "sk-secret-do-not-log-0123456789"
NO_RETRY = RetryPolicy(max_attempts=1)
PROVIDERS = ["oa", "an"]  # OpenAI-compatible and Anthropic, both served by the fake


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


T = TypeVar("T")


def run(handler: LLMHandler, awaitable: Awaitable[T]) -> T:
    """Run `awaitable` in a fresh event loop, then close the handler's pools of that loop."""

    async def main() -> T:
        try:
            return await awaitable
        finally:
            await handler.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def handler(fake_upstream_url: str) -> Iterator[LLMHandler]:
    dead = f"http://127.0.0.1:{_closed_port()}"
    configs = [
        ProviderConfig(name="oa", kind="openai_compatible", base_url=f"{fake_upstream_url}/v1", api_key=SECRET),
        ProviderConfig(name="an", kind="anthropic", base_url=fake_upstream_url, api_key=SECRET),
        # Small budgets so hanging upstreams fail fast.
        ProviderConfig(
            name="oa-slow",
            kind="openai_compatible",
            base_url=f"{fake_upstream_url}/v1",
            timeout_s=0.3,
            first_token_timeout_s=0.15,
        ),
        ProviderConfig(
            name="an-slow",
            kind="anthropic",
            base_url=fake_upstream_url,
            timeout_s=0.3,
            first_token_timeout_s=0.15,
        ),
        ProviderConfig(name="oa-dead", kind="openai", base_url=f"{dead}/v1", api_key=SECRET, connect_timeout_s=1),
        ProviderConfig(name="an-dead", kind="anthropic", base_url=dead, api_key=SECRET, connect_timeout_s=1),
    ]
    with LLMHandler(configs) as llm:
        yield llm


def _generate(handler: LLMHandler, model: str, **kwargs: object) -> None:
    handler.generate(model, prompt="Say something.", retry=NO_RETRY, **kwargs)  # type: ignore[arg-type]


def _stream(handler: LLMHandler, model: str) -> list[StreamEvent]:
    return list(handler.stream(model, prompt="Say something.", retry=NO_RETRY))


async def _astream(handler: LLMHandler, model: str) -> list[StreamEvent]:
    return [event async for event in handler.astream(model, prompt="Say something.", retry=NO_RETRY)]


# -------------------------------------------------------------------------------------- HTTP statuses

STATUS_CASES = [
    (400, BadRequestError, "bad_request", False),
    (401, AuthenticationError, "authentication_error", False),
    (403, AuthenticationError, "authentication_error", False),
    (404, NotFoundError, "not_found", False),
    (422, BadRequestError, "bad_request", False),
    (429, RateLimitedError, "rate_limited", True),
    (500, UpstreamServerError, "upstream_error", True),
    (503, UpstreamServerError, "upstream_error", True),
    (529, UpstreamServerError, "upstream_error", True),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status, cls, code, retryable", STATUS_CASES)
def test_it_maps_each_upstream_status(
    handler: LLMHandler, provider: str, status: int, cls: type[LLMError], code: str, retryable: bool
) -> None:
    model = f"status{status}@status={status}"

    with pytest.raises(cls) as caught:
        _generate(handler, f"{provider}/{model}")

    error = caught.value
    assert type(error) is cls
    assert (error.code, error.retryable, error.status_code) == (code, retryable, status)
    assert (error.provider, error.model) == (provider, model)
    assert f"simulated {status}" in error.message


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status, cls, code, retryable", STATUS_CASES)
def test_it_maps_each_upstream_status_when_streaming(
    handler: LLMHandler, provider: str, status: int, cls: type[LLMError], code: str, retryable: bool
) -> None:
    with pytest.raises(cls) as caught:
        _stream(handler, f"{provider}/s{status}@status={status}")

    assert (caught.value.code, caught.value.retryable, caught.value.status_code) == (code, retryable, status)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_reads_retry_after_on_429(handler: LLMHandler, provider: str) -> None:
    with pytest.raises(RateLimitedError) as caught:
        _generate(handler, f"{provider}/limited@status=429,retry_after=7")
    assert caught.value.retry_after == 7.0

    with pytest.raises(RateLimitedError) as caught:
        _stream(handler, f"{provider}/limited-stream@status=429,retry_after=2.5")
    assert caught.value.retry_after == 2.5


def test_it_has_no_retry_after_when_the_upstream_sends_none(handler: LLMHandler) -> None:
    with pytest.raises(RateLimitedError) as caught:
        _generate(handler, "oa/limited-plain@status=429")
    assert caught.value.retry_after is None


def test_it_maps_the_async_calls_too(handler: LLMHandler) -> None:
    async def scenario() -> None:
        with pytest.raises(RateLimitedError) as caught:
            await handler.agenerate("oa/alimited@status=429,retry_after=3", prompt="x", retry=NO_RETRY)
        assert caught.value.retry_after == 3.0
        with pytest.raises(NotFoundError):
            await _astream(handler, "an/amissing@status=404")

    run(handler, scenario())


# ------------------------------------------------------------------------------- invalid responses


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_maps_a_garbage_body_to_invalid_response(handler: LLMHandler, provider: str) -> None:
    with pytest.raises(InvalidResponseError) as caught:
        _generate(handler, f"{provider}/junk@garbage=1")
    assert (caught.value.code, caught.value.retryable, caught.value.provider) == (
        "invalid_response",
        True,
        provider,
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_maps_a_broken_stream_to_invalid_response(handler: LLMHandler, provider: str) -> None:
    with pytest.raises(InvalidResponseError):
        _stream(handler, f"{provider}/junk-stream@garbage=1")
    with pytest.raises(InvalidResponseError):
        run(handler, _astream(handler, f"{provider}/junk-astream@garbage=1"))


def test_it_maps_a_garbage_embeddings_body_to_invalid_response(handler: LLMHandler) -> None:
    with pytest.raises(InvalidResponseError):
        handler.embed("oa/junk-embed@garbage=1", ["a"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_maps_an_error_event_inside_a_stream(handler: LLMHandler, provider: str) -> None:
    deltas: list[StreamEvent] = []
    with pytest.raises(UpstreamServerError) as caught:
        for event in handler.stream(f"{provider}/midway@error_after=6", prompt="x", retry=NO_RETRY):
            deltas.append(event)

    assert caught.value.retryable is True
    assert all(event.type == "delta" for event in deltas)
    assert 1 <= len(deltas) <= 6


# ---------------------------------------------------------------------------------- content filter


def test_it_maps_a_content_filter_stop_to_content_filtered(handler: LLMHandler) -> None:
    with pytest.raises(ContentFilteredError) as caught:
        _generate(handler, "oa/filtered@content_filter=1")
    assert (caught.value.code, caught.value.retryable) == ("content_filtered", False)

    with pytest.raises(ContentFilteredError):
        _stream(handler, "oa/filtered-stream@content_filter=1")


def test_an_anthropic_refusal_is_the_answer_not_an_error(handler: LLMHandler) -> None:
    """Anthropic's ``stop_reason: "refusal"`` says why it stopped, as OpenAI's ``refusal`` field does: what the
    model said is the refusal, the content is empty and the finish_reason ``content_filter``."""
    whole = handler.generate("an/filtered@content_filter=1", prompt="Say something.", retry=NO_RETRY)
    *deltas, done = _stream(handler, "an/filtered@content_filter=1")
    assert done.result is not None
    streamed = "".join(event.content for event in deltas)
    assert (whole.text, whole.finish_reason, whole.refusal) == ("", "content_filter", streamed)
    assert (done.result.text, done.result.finish_reason, done.result.refusal) == ("", "content_filter", streamed)
    assert len(streamed.split()) == 8  # half of the fake's 16 words, then it refused


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_maps_a_400_content_filter_to_content_filtered(handler: LLMHandler, provider: str) -> None:
    with pytest.raises(ContentFilteredError) as caught:
        _generate(handler, f"{provider}/refused@content_filter=2")
    assert caught.value.status_code == 400


# ------------------------------------------------------------------------------ timeouts, connection


@pytest.mark.parametrize("provider", ["oa-slow", "an-slow"])
def test_a_hanging_upstream_times_out(handler: LLMHandler, provider: str) -> None:
    with pytest.raises(LLMTimeoutError) as caught:
        _generate(handler, f"{provider}/stuck@hang=1")
    assert (caught.value.code, caught.value.retryable, caught.value.phase) == ("timeout", True, "total")


@pytest.mark.parametrize("provider", ["oa-slow", "an-slow"])
def test_a_stream_without_a_first_token_times_out_in_the_first_token_phase(handler: LLMHandler, provider: str) -> None:
    with pytest.raises(LLMTimeoutError) as caught:
        _stream(handler, f"{provider}/mute@hang=1")
    assert caught.value.phase == "first_token"

    with pytest.raises(LLMTimeoutError) as caught:
        run(handler, _astream(handler, f"{provider}/amute@ttft_ms=2000"))
    assert caught.value.phase == "first_token"


def test_a_stream_stalling_after_its_first_tokens_times_out_in_the_total_phase(handler: LLMHandler) -> None:
    with pytest.raises(LLMTimeoutError) as caught:
        run(handler, _astream(handler, "oa-slow/stall@hang_after=3"))
    assert caught.value.phase == "total"


def test_the_per_call_timeout_overrides_the_provider_timeout(handler: LLMHandler) -> None:
    with pytest.raises(LLMTimeoutError):
        _generate(handler, "oa/late@latency_ms=1000", timeout_s=0.1)

    async def scenario() -> None:
        with pytest.raises(LLMTimeoutError):
            await handler.agenerate("an/alate@latency_ms=1000", prompt="x", timeout_s=0.1, retry=NO_RETRY)

    run(handler, scenario())


@pytest.mark.parametrize("provider", ["oa-dead", "an-dead"])
def test_a_refused_connection_is_a_connection_error(handler: LLMHandler, provider: str) -> None:
    with pytest.raises(LLMConnectionError) as caught:
        _generate(handler, f"{provider}/any")
    assert (caught.value.code, caught.value.retryable, caught.value.status_code) == (
        "connection_error",
        True,
        None,
    )

    with pytest.raises(LLMConnectionError):
        _stream(handler, f"{provider}/any")
    with pytest.raises(LLMConnectionError):
        run(handler, _astream(handler, f"{provider}/any"))


# ------------------------------------------------------------------------------------ configuration


def test_an_unknown_provider_is_not_configured(handler: LLMHandler) -> None:
    with pytest.raises(ProviderNotConfiguredError) as caught:
        _generate(handler, "nope/gpt-4o")
    assert (caught.value.code, caught.value.retryable, caught.value.provider) == (
        "provider_not_configured",
        False,
        "nope",
    )


def test_a_model_id_without_a_provider_is_not_configured(handler: LLMHandler) -> None:
    with pytest.raises(ProviderNotConfiguredError):
        _generate(handler, "gpt-4o")


def test_anthropic_has_no_embeddings(handler: LLMHandler) -> None:
    with pytest.raises(BadRequestError):
        handler.embed("an/claude", ["a"])


# ------------------------------------------------------------------------------------------ secrecy


@pytest.mark.parametrize("provider", PROVIDERS)
def test_messages_never_contain_the_api_key(handler: LLMHandler, provider: str) -> None:
    # The fake quotes the model name in its error message: a model named after the key makes the upstream
    # echo the key back, as some real upstreams do with bad credentials.
    with pytest.raises(AuthenticationError) as caught:
        _generate(handler, f"{provider}/{SECRET}@status=401")

    error = caught.value
    assert SECRET not in error.message
    assert SECRET not in str(error)
    assert "***" in error.message


def test_connection_errors_never_show_credentials_of_the_base_url() -> None:
    config = ProviderConfig(name="p", kind="openai", base_url=f"http://u:{SECRET}@127.0.0.1:{_closed_port()}/v1")
    with LLMHandler([config]) as llm, pytest.raises(LLMConnectionError) as caught:
        llm.generate("p/m", prompt="x", retry=NO_RETRY)
    assert SECRET not in str(caught.value)


# --------------------------------------------------------------------------------- the classes alone


@pytest.mark.parametrize(
    "cls, code, retryable",
    [
        (LLMTimeoutError, "timeout", True),
        (LLMConnectionError, "connection_error", True),
        (RateLimitedError, "rate_limited", True),
        (UpstreamServerError, "upstream_error", True),
        (AuthenticationError, "authentication_error", False),
        (BadRequestError, "bad_request", False),
        (NotFoundError, "not_found", False),
        (ContentFilteredError, "content_filtered", False),
        (ProviderNotConfiguredError, "provider_not_configured", False),
        (InvalidResponseError, "invalid_response", True),
    ],
)
def test_each_class_has_its_code_and_retryability(cls: type[LLMError], code: str, retryable: bool) -> None:
    error = cls("boom")
    assert isinstance(error, LLMError)
    assert (cls.code, error.retryable, error.status_code, error.retry_after) == (code, retryable, None, None)


def test_errors_survive_pickling() -> None:
    error = LLMTimeoutError("slow", phase="first_token", provider="p", model="m", status_code=None)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is LLMTimeoutError
    assert (copy.message, copy.phase, copy.provider, copy.model, copy.retryable) == (
        "slow",
        "first_token",
        "p",
        "m",
        True,
    )


def test_as_dict_describes_the_error() -> None:
    error = RateLimitedError("slow down", status_code=429, retry_after=2.0, provider="p", model="m")
    assert error.as_dict() == {
        "code": "rate_limited",
        "message": "slow down",
        "retryable": True,
        "status_code": 429,
        "retry_after": 2.0,
        "provider": "p",
        "model": "m",
    }


def test_an_exhausted_quota_is_not_worth_retrying() -> None:
    error = error_for_status(429, "quota", error_code="insufficient_quota")
    assert isinstance(error, RateLimitedError)
    assert error.retryable is False


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({}, None),
        ({"retry-after": "5"}, 5.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected
