"""A model's state and its reason, decided from given evidence (no database: the function is pure)."""

from __future__ import annotations

from typing import Any

import pytest

from monitoring.models import Probe
from monitoring.states import RECENT_PROBES, Evidence, State, model_state

THRESHOLD_MS = 2000.0


def ok(**fields: Any) -> Probe:
    values: dict[str, Any] = {"status": "smooth", "total_ms": 900.0, **fields}
    return Probe(ok=True, http_status=200, **values)


def failed(error_type: str = "timeout", http_status: int | None = None) -> Probe:
    return Probe(status="unknown", ok=False, http_status=http_status, error_type=error_type)


def limited() -> Probe:
    return Probe(status="unknown", ok=False, http_status=429, error_type="rate_limited")


def state_of(*recent: Probe, p95: float | None = 300.0, breaker: str | None = None, window: str | None = None) -> Any:
    found = model_state(
        Evidence(recent=list(recent), p95_ttfb_ms=p95, breaker_error=breaker, maintenance=window),
        degraded_p95_ttfb_ms=THRESHOLD_MS,
    )
    return found.state, found.reason


CASES: dict[str, tuple[tuple[Probe, ...], dict[str, Any], tuple[State, str]]] = {
    "operational": ((ok(), failed()), {}, (State.OPERATIONAL, "Probes succeed")),
    "unknown": ((), {}, (State.UNKNOWN, "Not probed yet")),
    "down-one": ((failed("timeout"), ok()), {}, (State.DOWN, "1 consecutive probe failure: timeout")),
    "down-three": (
        (failed("upstream_error", 503), failed(), failed(), ok()),
        {},
        (State.DOWN, "3 consecutive probe failures: upstream_error (HTTP 503)"),
    ),
    "down-too-slow": (
        (ok(status="unknown", total_ms=120_000.0),),
        {},
        (State.DOWN, "1 consecutive probe failure: took 120.0 s"),
    ),
    "down-breaker": ((ok(),), {"breaker": "HTTP 500"}, (State.DOWN, "Circuit breaker open: HTTP 500")),
    "rate_limited": ((limited(), failed()), {}, (State.RATE_LIMITED, "Rate limited by the provider (HTTP 429)")),
    "degraded-p95": (
        (ok(),),
        {"p95": 2500.4},
        (State.DEGRADED, "p95 time to first token 2500 ms, over 2000 ms"),
    ),
    "degraded-slow-probe": (
        (ok(status="congestion", total_ms=41_234.0),),
        {},
        (State.DEGRADED, "Last probe slow: 41.2 s (congestion)"),
    ),
    "maintenance": (
        (failed(), failed(), failed()),
        {"breaker": "", "window": "Database upgrade"},
        (State.MAINTENANCE, "Maintenance: Database upgrade"),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_state_says_why(case: str) -> None:
    recent, options, expected = CASES[case]
    assert state_of(*recent, **options) == expected


def test_a_p95_at_the_threshold_is_not_degraded() -> None:
    assert state_of(ok(), p95=THRESHOLD_MS)[0] == State.OPERATIONAL


def test_a_failure_after_a_rate_limited_probe_counts_only_the_failures() -> None:
    assert state_of(failed(), limited(), failed()) == (State.DOWN, "1 consecutive probe failure: timeout")


def test_a_run_longer_than_the_evidence_is_counted_as_at_least() -> None:
    recent = [failed() for _ in range(RECENT_PROBES)]
    assert state_of(*recent) == (State.DOWN, f"{RECENT_PROBES}+ consecutive probe failures: timeout")


def test_a_breaker_open_without_an_error_says_so_plainly() -> None:
    assert state_of(ok(), breaker="") == (State.DOWN, "Circuit breaker open")
