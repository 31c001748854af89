"""The gateway's own settings: routing, circuit breakers, limits, usage accounting (energy: ``energy.py``)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .env import env_float, env_int, env_str

ROUTING_MODE = env_str("ROUTING_MODE", "keywords")
ROUTING_MODES = ("keywords", "llm", "hybrid", "semantic")
if ROUTING_MODE not in ROUTING_MODES:
    raise ImproperlyConfigured(f"ROUTING_MODE must be one of {', '.join(ROUTING_MODES)}, got {ROUTING_MODE!r}")
ROUTING_DEFAULT_CATEGORY = env_str("ROUTING_DEFAULT_CATEGORY", "conversation")
# The small model asked for a category name in the llm and hybrid modes, and how long it may take.
ROUTING_CLASSIFIER_MODEL = env_str("ROUTING_CLASSIFIER_MODEL", "demo/demo-fast")
ROUTING_CLASSIFIER_TIMEOUT_S = env_float("ROUTING_CLASSIFIER_TIMEOUT_S", 3.0, minimum=0.1)
# The latency strategy trusts a model's p50 TTFT only when monitoring published it at most this long ago and
# it rests on at least this many samples; otherwise the model keeps its chain position (routing/strategy.py).
ROUTING_LATENCY_MAX_AGE_S = env_float("ROUTING_LATENCY_MAX_AGE_S", 900.0, minimum=1.0)
ROUTING_LATENCY_MIN_SAMPLES = env_int("ROUTING_LATENCY_MIN_SAMPLES", 5, minimum=1)

# Circuit breaker (contract section 6): consecutive retryable failures that open it, and for how long.
BREAKER_FAILURE_THRESHOLD = env_int("BREAKER_FAILURE_THRESHOLD", 3, minimum=1)
BREAKER_OPEN_SECONDS = env_float("BREAKER_OPEN_SECONDS", 300.0, minimum=0.0)

# Per-key defaults when a key sets none.
DEFAULT_RPM_LIMIT = env_int("DEFAULT_RPM_LIMIT", 600, minimum=1)
DEFAULT_TPM_LIMIT = env_int("DEFAULT_TPM_LIMIT", 1_000_000, minimum=1)
DEFAULT_MAX_TOKENS_CAP = env_int("DEFAULT_MAX_TOKENS_CAP", 16_384, minimum=1)
DEFAULT_MAX_PROMPT_TOKENS = env_int("DEFAULT_MAX_PROMPT_TOKENS", 128_000, minimum=1)
# A key's parallel-request slot is a lease: a process killed mid-request frees it when the lease lapses. It
# outlasts the longest call (the providers' timeouts are at most 300 s by default).
KEY_PARALLEL_LEASE_S = env_int("KEY_PARALLEL_LEASE_S", 600, minimum=1)
# After a rotation, how long the old secret keeps working (a request may ask for another grace period).
KEY_ROTATION_GRACE_S = env_int("KEY_ROTATION_GRACE_S", 24 * 3600, minimum=0)
# How long a request may wait for a model's outbound budget before the model is skipped.
OUTBOUND_BUDGET_WAIT_S = env_float("OUTBOUND_BUDGET_WAIT_S", 0.0, minimum=0.0)

# How often each process checks whether the in-memory keys and routing tables changed elsewhere.
SNAPSHOT_CHECK_SECONDS = env_float("SNAPSHOT_CHECK_SECONDS", 1.0, minimum=0.0)

# Usage records are buffered in each web process and written in batches, off the request path.
USAGE_FLUSH_SECONDS = env_float("USAGE_FLUSH_SECONDS", 1.0, minimum=0.05)
USAGE_FLUSH_BATCH = env_int("USAGE_FLUSH_BATCH", 500, minimum=1)

# Budgets (the budgets app): how long a call's budget hold lasts if it is never reconciled (its process was
# killed; a call still running then is charged when it ends, but no longer holds capacity), and how long
# after a budget counter is rebuilt from the usage ledger it is read again, for the rows every process still
# held in its buffer (at least a few USAGE_FLUSH_SECONDS).
BUDGET_HOLD_SECONDS = env_float("BUDGET_HOLD_SECONDS", 3600.0, minimum=1.0)
BUDGET_LEDGER_CATCHUP_SECONDS = env_float(
    "BUDGET_LEDGER_CATCHUP_SECONDS", max(10.0, 5 * USAGE_FLUSH_SECONDS), minimum=0.0
)

# The demo upstream `make run` starts, which the default routes use until a real provider is configured.
DEMO_UPSTREAM_URL = env_str("DEMO_UPSTREAM_URL", f"http://127.0.0.1:{env_int('FAKE_UPSTREAM_PORT', 8900)}/v1")

# Responses API (/v1/responses): how long a stored response (``store: true``) can be read back or continued
# with ``previous_response_id``; older ones are treated as gone and purged by beat every hour.
RESPONSES_RETENTION_DAYS = env_int("RESPONSES_RETENTION_DAYS", 30, minimum=1)
