"""The availability monitor: probe thresholds, schedule defaults, concurrency and retention."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .env import env_float, env_int, env_str

# A probe is classified on its total time (seconds): smooth < SMOOTH, available <= AVAILABLE,
# congestion <= CONGESTION, lagging <= LAGGING, unknown above LAGGING or on any error.
MONITORING_SMOOTH_MAX_S = env_float("MONITORING_SMOOTH_MAX_S", 8.5, minimum=0.0)
MONITORING_AVAILABLE_MAX_S = env_float("MONITORING_AVAILABLE_MAX_S", 35.0, minimum=0.0)
MONITORING_CONGESTION_MAX_S = env_float("MONITORING_CONGESTION_MAX_S", 50.0, minimum=0.0)
MONITORING_LAGGING_MAX_S = env_float("MONITORING_LAGGING_MAX_S", 100.0, minimum=0.0)
if not (
    MONITORING_SMOOTH_MAX_S <= MONITORING_AVAILABLE_MAX_S <= MONITORING_CONGESTION_MAX_S <= MONITORING_LAGGING_MAX_S
):
    raise ImproperlyConfigured(
        "MONITORING_SMOOTH_MAX_S <= MONITORING_AVAILABLE_MAX_S <= MONITORING_CONGESTION_MAX_S "
        "<= MONITORING_LAGGING_MAX_S must hold"
    )

# Default interval between two probes of a model (each model may set its own in the admin).
MONITORING_PROBE_INTERVAL_S = env_int("MONITORING_PROBE_INTERVAL_S", 600, minimum=10)
# How often beat wakes the probe task up to probe the models that are due (seeded schedule).
MONITORING_TICK_S = env_int("MONITORING_TICK_S", 60, minimum=1)
# How often beat refreshes the statistics and roll-ups (seeded schedule).
MONITORING_STATS_REFRESH_S = env_int("MONITORING_STATS_REFRESH_S", 900, minimum=1)
# A probe gives up after this long (an error, so "unknown"); above the lagging bound so slow answers count.
MONITORING_PROBE_TIMEOUT_S = env_float("MONITORING_PROBE_TIMEOUT_S", 120.0, minimum=0.1)
# How many models one run probes at the same time.
MONITORING_PROBE_CONCURRENCY = env_int("MONITORING_PROBE_CONCURRENCY", 8, minimum=1)
MONITORING_PROBE_PROMPT = env_str("MONITORING_PROBE_PROMPT", "Say hello in one short sentence.")
MONITORING_PROBE_MAX_TOKENS = env_int("MONITORING_PROBE_MAX_TOKENS", 16, minimum=1)
# Queue of the scheduled probes and statistics (an on-demand refresh uses "default" to answer sooner).
MONITORING_QUEUE = env_str("MONITORING_QUEUE", "low")
if MONITORING_QUEUE not in ("high", "default", "low"):
    raise ImproperlyConfigured(f"MONITORING_QUEUE must be high, default or low, got {MONITORING_QUEUE!r}")

# Retention: raw probes, then hourly and daily roll-ups.
MONITORING_RAW_RETENTION_DAYS = env_int("MONITORING_RAW_RETENTION_DAYS", 7, minimum=1)
MONITORING_ROLLUP_RETENTION_DAYS = env_int("MONITORING_ROLLUP_RETENTION_DAYS", 365, minimum=1)

# States and incidents (monitoring.states, monitoring.incidents). A model is degraded when the p95 of its time
# to first token is above this (milliseconds); an incident opens after this many consecutive failed probes (or
# when the model's circuit breaker opens) and, while it stays open, gets a "still failing" update at most this
# often.
MONITORING_DEGRADED_P95_TTFT_MS = env_float("MONITORING_DEGRADED_P95_TTFT_MS", 5000.0, minimum=1.0)
MONITORING_INCIDENT_AFTER_FAILURES = env_int("MONITORING_INCIDENT_AFTER_FAILURES", 3, minimum=1)
MONITORING_INCIDENT_UPDATE_S = env_int("MONITORING_INCIDENT_UPDATE_S", 3600, minimum=60)
