"""Retries: backoff bounds, Retry-After, what is retried, and streams only before their first delta.

Sleeps are injected and recorded: no test waits for a backoff.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest

from llm import (
    BadRequestError,
    LLMError,
    LLMHandler,
    ProviderConfig,
    RateLimitedError,
    RetryPolicy,
    UpstreamServerError,
)

POLICY = RetryPolicy(max_attempts=3, base_delay_s=0.5, max_delay_s=8.0, jitter=0.5)


class Sleeps:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.delays.append(seconds)


T = TypeVar("T")


def run(handler: LLMHandler, awaitable: Awaitable[T]) -> T:
    """Run `awaitable` in a fresh event loop, then close the handler's pools of that loop."""

    async def main() -> T:
        try:
            return await awaitable
        finally:
            await handler.aclose()

    return asyncio.run(main())


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def handler(fake_reset: str, sleeps: Sleeps) -> Iterator[LLMHandler]:
    configs = [
        ProviderConfig(name="oa", kind="openai_compatible", base_url=f"{fake_reset}/v1"),
        ProviderConfig(name="an", kind="anthropic", base_url=fake_reset),
    ]
    with LLMHandler(configs, retry=POLICY, sleep=sleeps, async_sleep=sleeps.asleep, rng=random.Random(7)) as llm:
        yield llm


def requests_made(url: str, model: str) -> int:
    with urllib.request.urlopen(f"{url}/_fake/stats", timeout=5) as response:
        stats: dict[str, Any] = json.loads(response.read())
    return int(stats["requests"].get(model, 0))


def configure(url: str, models: dict[str, dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{url}/_fake/models", data=json.dumps(models).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


# ------------------------------------------------------------------------------------ the policy alone


def test_backoff_doubles_within_the_jitter_bounds() -> None:
    error = UpstreamServerError("boom")
    rng = random.Random(0)
    for _ in range(200):
        assert 0.25 <= POLICY.delay_for(1, error, rng) <= 0.5
        assert 0.5 <= POLICY.delay_for(2, error, rng) <= 1.0
        assert 1.0 <= POLICY.delay_for(3, error, rng) <= 2.0


def test_backoff_without_jitter_is_exact_and_capped() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0, jitter=0.0)
    error = UpstreamServerError("boom")
    delays = [policy.delay_for(attempt, error, random.Random(0)) for attempt in range(1, 6)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_wins_when_longer_than_the_backoff() -> None:
    rng = random.Random(0)
    assert POLICY.delay_for(1, RateLimitedError("slow", retry_after=3.0), rng) == 3.0
    # Shorter than the backoff: the backoff stands.
    assert 0.5 <= POLICY.delay_for(2, RateLimitedError("slow", retry_after=0.1), rng) <= 1.0


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(max_retry_after_s=60.0)
    assert policy.delay_for(1, RateLimitedError("slow", retry_after=3600.0), random.Random(0)) == 60.0


def test_only_retryable_errors_within_the_attempt_budget_are_retried() -> None:
    assert POLICY.should_retry(1, UpstreamServerError("x"))
    assert POLICY.should_retry(2, UpstreamServerError("x"))
    assert not POLICY.should_retry(3, UpstreamServerError("x"))
    assert not POLICY.should_retry(1, BadRequestError("x"))
    assert not RetryPolicy(max_attempts=1).should_retry(1, UpstreamServerError("x"))


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_delay_s": -1.0}, {"jitter": 1.5}, {"max_delay_s": -0.1}]
)
def test_it_rejects_a_nonsensical_policy(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# ------------------------------------------------------------------------------- through the handler


@pytest.mark.parametrize("provider", ["oa", "an"])
def test_it_succeeds_after_two_retryable_failures(
    handler: LLMHandler, sleeps: Sleeps, fake_reset: str, provider: str
) -> None:
    model = "flaky@fail_first=2,status=503"

    result = handler.generate(f"{provider}/{model}", prompt="hello")

    assert result.finish_reason == "stop"
    assert requests_made(fake_reset, model) == 3
    assert len(sleeps.delays) == 2
    assert 0.25 <= sleeps.delays[0] <= 0.5
    assert 0.5 <= sleeps.delays[1] <= 1.0


def test_it_honours_retry_after(handler: LLMHandler, sleeps: Sleeps) -> None:
    handler.generate("oa/busy@fail_first=1,status=429,retry_after=3", prompt="hello")
    assert sleeps.delays == [3.0]


def test_it_does_not_retry_a_non_retryable_error(handler: LLMHandler, sleeps: Sleeps, fake_reset: str) -> None:
    with pytest.raises(BadRequestError):
        handler.generate("oa/bad@status=400", prompt="hello")
    assert sleeps.delays == []
    assert requests_made(fake_reset, "bad@status=400") == 1


def test_it_gives_up_after_max_attempts(handler: LLMHandler, sleeps: Sleeps, fake_reset: str) -> None:
    with pytest.raises(UpstreamServerError):
        handler.generate("oa/down@status=503", prompt="hello")
    assert requests_made(fake_reset, "down@status=503") == 3
    assert len(sleeps.delays) == 2


def test_one_attempt_means_no_retry(handler: LLMHandler, sleeps: Sleeps, fake_reset: str) -> None:
    with pytest.raises(UpstreamServerError):
        handler.generate("oa/once@status=503", prompt="hello", retry=RetryPolicy(max_attempts=1))
    assert requests_made(fake_reset, "once@status=503") == 1
    assert sleeps.delays == []


def test_a_control_config_drives_the_failures(handler: LLMHandler, sleeps: Sleeps, fake_reset: str) -> None:
    configure(fake_reset, {"controlled": {"fail_first": 1, "status": 500}})
    result = handler.generate("oa/controlled", prompt="hello")
    assert result.model == "controlled"
    assert requests_made(fake_reset, "controlled") == 2
    assert len(sleeps.delays) == 1


def test_the_same_rng_seed_gives_the_same_delays(fake_reset: str) -> None:
    def delays() -> list[float]:
        recorded = Sleeps()
        config = ProviderConfig(name="oa", kind="openai_compatible", base_url=f"{fake_reset}/v1")
        with LLMHandler([config], sleep=recorded, rng=random.Random(42)) as llm, pytest.raises(LLMError):
            llm.generate("oa/seeded@status=500", prompt="hello")
        return recorded.delays

    assert delays() == delays()


def test_agenerate_retries_with_the_async_sleep(handler: LLMHandler, sleeps: Sleeps, fake_reset: str) -> None:
    model = "aflaky@fail_first=2,status=502"
    result = run(handler, handler.agenerate(f"an/{model}", prompt="hello"))
    assert result.finish_reason == "stop"
    assert requests_made(fake_reset, model) == 3
    assert len(sleeps.delays) == 2


# ----------------------------------------------------------------------------------------- streams


@pytest.mark.parametrize("provider", ["oa", "an"])
def test_a_stream_is_retried_before_its_first_delta(
    handler: LLMHandler, sleeps: Sleeps, fake_reset: str, provider: str
) -> None:
    model = "sflaky@fail_first=1,status=503"

    events = list(handler.stream(f"{provider}/{model}", prompt="hello"))

    assert events[-1].type == "done"
    assert requests_made(fake_reset, model) == 2
    assert len(sleeps.delays) == 1


@pytest.mark.parametrize("provider", ["oa", "an"])
def test_a_stream_is_not_retried_after_its_first_delta(
    handler: LLMHandler, sleeps: Sleeps, fake_reset: str, provider: str
) -> None:
    model = "broken@error_after=5"
    received = []

    with pytest.raises(UpstreamServerError) as caught:
        for event in handler.stream(f"{provider}/{model}", prompt="hello"):
            received.append(event)

    assert caught.value.retryable is True  # retryable in itself, but text was already sent
    assert received and all(event.type == "delta" for event in received)
    assert requests_made(fake_reset, model) == 1
    assert sleeps.delays == []


def test_astream_is_retried_before_its_first_delta_only(handler: LLMHandler, sleeps: Sleeps, fake_reset: str) -> None:
    async def collect(model: str) -> int:
        count = 0
        async for _ in handler.astream(model, prompt="hello"):
            count += 1
        return count

    assert run(handler, collect("oa/asflaky@fail_first=2,status=500")) > 1
    assert requests_made(fake_reset, "asflaky@fail_first=2,status=500") == 3
    assert len(sleeps.delays) == 2

    with pytest.raises(UpstreamServerError):
        run(handler, collect("oa/abroken@error_after=4"))
    assert requests_made(fake_reset, "abroken@error_after=4") == 1
    assert len(sleeps.delays) == 2
