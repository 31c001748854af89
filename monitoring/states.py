"""A model's state, and why, from what the monitor knows of it: the one place that decides it.

In order of precedence:

* ``maintenance`` — a maintenance window covers the model now (the windows are announced work: whatever the
  probes say meanwhile is expected);
* ``down`` — its circuit breaker is open (real traffic fails), or its last probe failed or took longer than
  the lagging bound; the reason counts the consecutive failures ("3 consecutive probe failures: timeout");
* ``unknown`` — never probed;
* ``rate_limited`` — its last probe was refused with a 429: the provider limits us, which says nothing about
  whether the model works, so it counts neither for nor against availability;
* ``degraded`` — its last probe was slow (congestion or lagging), or the p95 of its time to first token is
  over ``MONITORING_DEGRADED_P95_TTFT_MS``;
* ``operational`` — otherwise.

The functions here are pure: the caller gathers the evidence (``monitoring.selectors.model_evidence``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .models import Bucket, Probe


class State(StrEnum):
    OPERATIONAL = "operational"
    DEGRADED = "degraded"
    DOWN = "down"
    RATE_LIMITED = "rate_limited"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"


LABELS = {
    State.OPERATIONAL: "Operational",
    State.DEGRADED: "Degraded",
    State.DOWN: "Down",
    State.RATE_LIMITED: "Rate limited",
    State.MAINTENANCE: "Maintenance",
    State.UNKNOWN: "No data",
}

# How many of a model's latest probes the evidence holds: enough to count a run of failures in the reason.
RECENT_PROBES = 20


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the state of one model is decided from."""

    recent: Sequence[Probe]  # its latest probes, newest first (at most RECENT_PROBES)
    p95_ttfb_ms: float | None
    breaker_error: str | None  # None unless its breaker is open now ("" when the breaker kept no error)
    maintenance: str | None  # the title of the maintenance window covering it now


@dataclass(frozen=True, slots=True)
class ModelState:
    state: State
    reason: str

    @property
    def label(self) -> str:
        return LABELS[self.state]


def failed(probe: Probe) -> bool:
    """A probe that says the model does not work: an error (429s aside) or slower than the lagging bound."""
    return probe.status == Bucket.UNKNOWN and not probe.rate_limited


def consecutive_failures(recent: Sequence[Probe]) -> int:
    """How many of the latest probes (newest first) failed in a row."""
    count = 0
    for probe in recent:
        if not failed(probe):
            break
        count += 1
    return count


def describe_failure(probe: Probe) -> str:
    """A failed probe in a few words: its error code, else its HTTP status, else its slowness."""
    if probe.ok:
        return f"took {(probe.total_ms or 0) / 1000:.1f} s"
    if probe.error_type:
        return (
            probe.error_type if probe.http_status in (None, 200) else f"{probe.error_type} (HTTP {probe.http_status})"
        )
    return f"HTTP {probe.http_status}" if probe.http_status else "error"


def model_state(evidence: Evidence, *, degraded_p95_ttfb_ms: float) -> ModelState:
    if evidence.maintenance is not None:
        return ModelState(State.MAINTENANCE, f"Maintenance: {evidence.maintenance}")
    if evidence.breaker_error is not None:
        detail = f": {evidence.breaker_error}" if evidence.breaker_error else ""
        return ModelState(State.DOWN, f"Circuit breaker open{detail}")
    if not evidence.recent:
        return ModelState(State.UNKNOWN, "Not probed yet")
    last = evidence.recent[0]
    failures = consecutive_failures(evidence.recent)
    if failures:
        count = f"{failures}+" if failures == len(evidence.recent) == RECENT_PROBES else str(failures)
        noun = "failure" if failures == 1 else "failures"
        return ModelState(State.DOWN, f"{count} consecutive probe {noun}: {describe_failure(last)}")
    if last.rate_limited:
        return ModelState(State.RATE_LIMITED, "Rate limited by the provider (HTTP 429)")
    if last.status in (Bucket.CONGESTION, Bucket.LAGGING):
        return ModelState(State.DEGRADED, f"Last probe slow: {(last.total_ms or 0) / 1000:.1f} s ({last.status})")
    if evidence.p95_ttfb_ms is not None and evidence.p95_ttfb_ms > degraded_p95_ttfb_ms:
        return ModelState(
            State.DEGRADED,
            f"p95 time to first token {evidence.p95_ttfb_ms:.0f} ms, over {degraded_p95_ttfb_ms:.0f} ms",
        )
    return ModelState(State.OPERATIONAL, "Probes succeed")
