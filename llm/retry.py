"""Retry policy: exponential backoff with jitter that honours the upstream's Retry-After.

The policy only computes delays; the handler sleeps with an injected `sleep`/`async_sleep` so tests
record delays instead of waiting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import LLMError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts the first try: 1 means no retry (the router retries across models itself).

    The delay after failed attempt n (1-based) is `min(max_delay_s, base_delay_s * 2**(n-1))`, reduced by a
    random fraction of at most `jitter` (so it lies in `[d * (1 - jitter), d]`), then raised to the error's
    `retry_after` when that is longer, the latter capped at `max_retry_after_s`.
    """

    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.5
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def should_retry(self, attempt: int, error: LLMError) -> bool:
        """Whether to try again after `attempt` (1-based) failed with `error`."""
        return error.retryable and attempt < self.max_attempts

    def delay_for(self, attempt: int, error: LLMError, rng: random.Random) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based) before the next one."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(attempt - 1, 0))
        if self.jitter:
            backoff *= 1.0 - self.jitter * rng.random()
        if error.retry_after is not None:
            return max(backoff, min(error.retry_after, self.max_retry_after_s))
        return backoff
