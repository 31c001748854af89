"""Reads of the monitor: what the status API, the status page, the dashboard's JSON and the probe log show.

Platform status (Statuspage vocabulary), from each monitored model's state (``monitoring.states``):
maintenance when the admin's flag is on or every model is in a maintenance window; otherwise major_outage
when every model is down, partial_outage when some are, degraded when none is down but some are degraded,
rate limited or not probed yet, else operational.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from routing.models import CircuitBreaker, LLMModel
from routing.selectors import LatencyFigure

from . import percentiles, statistics
from .models import Bucket, Incident, MaintenanceWindow, ModelStats, MonitoringSettings, Probe, ProbeKind
from .states import RECENT_PROBES, Evidence, ModelState, State, model_state

UP = (Bucket.SMOOTH, Bucket.AVAILABLE)
SLOW = (Bucket.CONGESTION, Bucket.LAGGING)


@dataclass(frozen=True)
class ModelRow:
    model: LLMModel
    stats: ModelStats | None
    probe: Probe | None

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def status(self) -> str:
        return self.probe.status if self.probe is not None else Bucket.UNKNOWN


def monitored_rows(model_ids: list[str] | None = None, *, public: bool = False) -> list[ModelRow]:
    """Monitored, enabled models (of enabled providers) with their statistics and last probe, by id;
    ``public``: only those on the public status page."""
    models = LLMModel.objects.filter(monitor=True, kind="chat", enabled=True, provider__enabled=True).select_related(
        "provider"
    )
    if public:
        models = models.filter(public=True)
    stats = {s.model_id: s for s in ModelStats.objects.filter(model__in=models).select_related("last_probe")}
    rows = []
    for model in models:
        row = stats.get(model.pk)
        rows.append(ModelRow(model, row, row.last_probe if row else None))
    rows.sort(key=lambda r: r.model_id)
    if model_ids is not None:
        wanted = set(model_ids)
        rows = [r for r in rows if r.model_id in wanted]
    return rows


def find_model(model_id: str) -> LLMModel | None:
    provider, _, name = model_id.partition("/")
    return LLMModel.objects.select_related("provider").filter(provider__name=provider, name=name).first()


_iso = statistics.iso


def _availability(stats: ModelStats | None, windows: tuple[str, ...]) -> dict[str, float | None]:
    return {w: getattr(stats, f"availability_{w}") if stats else None for w in windows}


def stats_payload() -> dict[str, Any]:
    """``GET /api/v1/monitoring/stats``: every monitored model's last probe and statistics."""
    rows = monitored_rows()
    states = model_states(rows, now=timezone.now())
    models = []
    for row in rows:
        probe, stats = row.probe, row.stats
        state = states[row.model.pk]
        models.append(
            {
                "model": row.model_id,
                "provider": row.model.provider.name,
                "status": row.status,
                "state": state.state.value,
                "state_reason": state.reason,
                "ok": bool(probe and probe.ok),
                "http_status": probe.http_status if probe else None,
                "error": (probe.error or None) if probe else None,
                "ttfb_ms": probe.ttfb_ms if probe else None,
                "total_ms": probe.total_ms if probe else None,
                "tokens_per_sec": probe.tokens_per_sec if probe else None,
                "energy_wh": probe.energy_wh if probe else None,
                "checked_at": _iso(probe.checked_at) if probe else None,
                "availability": _availability(stats, ("1h", "24h", "7d", "30d")),
                "percentiles": {w: _percentiles(stats, w) for w in statistics.LATENCY_WINDOWS},
                "validity_24h": _validity(stats),
                **{
                    f"{p}_{metric}": getattr(stats, f"{p}_{metric}") if stats else None
                    for metric in ("ttfb_ms", "total_ms", "tokens_per_sec")
                    for p in ("p50", "p95")
                },
            }
        )
    return {"updated_at": _iso(_updated_at(rows)), "models": models}


def _updated_at(rows: list[ModelRow]) -> datetime:
    """The latest statistics refresh or probe; now when there is none."""
    moments = [r.stats.refreshed_at for r in rows if r.stats and r.stats.refreshed_at]
    moments += [r.probe.checked_at for r in rows if r.probe]
    return max(moments) if moments else timezone.now()


def platform_status(*, now: datetime | None = None) -> dict[str, Any]:
    """``GET /api/v1/platform-status``."""
    rows = monitored_rows()
    return platform_summary(rows, model_states(rows, now=now or timezone.now()))


def platform_summary(rows: list[ModelRow], states: dict[int, ModelState]) -> dict[str, Any]:
    """The platform's state from its models' (``platform-status``, and the status page's headline)."""
    by_state: dict[State, list[str]] = {state: [] for state in State}
    for row in rows:
        by_state[states[row.model.pk].state].append(row.model_id)
    down = by_state[State.DOWN]
    flag = MonitoringSettings.load()
    total = len(rows)
    if flag.maintenance:
        status, message = "maintenance", flag.maintenance_message or "Scheduled maintenance in progress."
    elif total == 0:
        status, message = "operational", "No models are monitored."
    elif len(by_state[State.MAINTENANCE]) == total:
        status, message = "maintenance", "Every model is in a maintenance window."
    elif len(down) == total:
        status, message = "major_outage", "Every model is down."
    elif down:
        status, message = "partial_outage", f"Down: {', '.join(down)}."
    elif len(by_state[State.OPERATIONAL]) + len(by_state[State.MAINTENANCE]) < total:
        notes = (
            (State.DEGRADED, "Slow"),
            (State.RATE_LIMITED, "Rate limited"),
            (State.UNKNOWN, "Not probed yet"),
        )
        message = " ".join(f"{label}: {', '.join(by_state[s])}." for s, label in notes if by_state[s])
        status = "degraded"
    elif by_state[State.MAINTENANCE]:
        status, message = "operational", f"In maintenance: {', '.join(by_state[State.MAINTENANCE])}."
    else:
        status, message = "operational", "All models are operational."
    return {
        "status": status,
        "message": message,
        "updated_at": _iso(_updated_at(rows)),
        "stats": {"operational_models": total - len(down) - len(by_state[State.UNKNOWN]), "total_models": total},
        "failed_models": down,
    }


def _validity(stats: ModelStats | None) -> dict[str, float | None]:
    """Percent of valid answers per checked kind over 24 h; null for a kind not probed then."""
    stored = stats.validity_24h if stats else {}
    return {kind: stored.get(kind) for kind in statistics.VALIDITY_KINDS}


def _percentiles(stats: ModelStats | None, window: str) -> dict[str, Any]:
    """The model's p50/p95/p99 over ``window`` as the last statistics refresh merged them (probes and traffic)."""
    stored = stats.percentiles.get(window) if stats else None
    return stored if stored else statistics.LatencyWindow.empty(window).payload()


def model_evidence(model_pks: list[int], *, now: datetime) -> dict[int, Evidence]:
    """What each model's state is decided from: its latest probes, p95 TTFT, open breaker, maintenance."""
    recent = {
        pk: list(
            Probe.objects.filter(model_id=pk, kind=ProbeKind.STREAM).order_by("-checked_at", "-id")[:RECENT_PROBES]
        )
        for pk in model_pks
    }
    p95 = {
        pk: figures["p95_ttft_ms"]
        for pk, figures in latency_percentiles(
            {s.model_id: s for s in ModelStats.objects.filter(model_id__in=model_pks)}
        ).items()
    }
    # An open breaker refuses traffic only until its open period ends; after that the next request is its
    # trial, and a model nobody calls would otherwise look down for ever.
    refusing_since = now.timestamp() - settings.BREAKER_OPEN_SECONDS
    breakers = {
        b.model_id: _breaker_cause(b.last_error)
        for b in CircuitBreaker.objects.filter(
            model_id__in=model_pks, state=CircuitBreaker.State.OPEN, opened_at__gt=refusing_since
        )
    }
    windows = maintenance_covering(model_pks, now=now)
    return {
        pk: Evidence(
            recent=recent[pk], p95_ttfb_ms=p95.get(pk), breaker_error=breakers.get(pk), maintenance=windows.get(pk)
        )
        for pk in model_pks
    }


def _breaker_cause(last_error: str) -> str:
    """The error code and HTTP status of a breaker's last error ("upstream_error (HTTP 500)"), without the
    provider's message: states are shown on the public page, and a message may quote what the caller sent."""
    code, _, rest = last_error.partition(":")
    status = re.search(r"\(HTTP \d{3}\)$", rest)
    return f"{code.strip()} {status.group(0)}" if status else code.strip()


def model_states(rows: list[ModelRow], *, now: datetime) -> dict[int, ModelState]:
    """Each row's model's state (by model pk)."""
    evidence = model_evidence([row.model.pk for row in rows], now=now)
    threshold = settings.MONITORING_DEGRADED_P95_TTFT_MS
    return {pk: model_state(e, degraded_p95_ttfb_ms=threshold) for pk, e in evidence.items()}


def latency_percentiles(stats: dict[int, ModelStats]) -> dict[int, dict[str, float | None]]:
    """The p50/p95 of TTFT and tokens/s each model is shown with (the status page, the degraded state).

    The one place that says where these figures come from: the statistics row's 24 h percentiles, merged
    from the hourly latency roll-ups of probes and real traffic (``statistics.LatencyWindow``).
    """

    def figure(window: dict[str, Any], metric: str, q: str) -> float | None:
        value = (window.get(metric) or {}).get(q)
        return float(value) if value is not None else None

    shown = {}
    for pk, row in stats.items():
        window = (row.percentiles or {}).get("24h") or {}
        shown[pk] = {
            "p50_ttft_ms": figure(window, "ttft_ms", "p50"),
            "p95_ttft_ms": figure(window, "ttft_ms", "p95"),
            "p50_tokens_per_sec": figure(window, "tokens_per_sec", "p50"),
            "p95_tokens_per_sec": figure(window, "tokens_per_sec", "p95"),
        }
    return shown


def maintenance_covering(model_pks: list[int], *, now: datetime) -> dict[int, str]:
    """The title of the maintenance window covering each model now (models without one are left out)."""
    covering: dict[int, str] = {}
    for window in MaintenanceWindow.objects.filter(starts_at__lte=now, ends_at__gt=now).prefetch_related(
        "affected_models"
    ):
        affected = {m.pk for m in window.affected_models.all()} or set(model_pks)
        for pk in model_pks:
            if pk in affected:
                covering.setdefault(pk, window.title)
    return covering


def maintenance_windows(*, now: datetime, models: list[LLMModel] | None = None) -> QuerySet[MaintenanceWindow]:
    """Windows in progress or to come (soonest first); with ``models``, those touching any of them."""
    windows = MaintenanceWindow.objects.filter(ends_at__gt=now).prefetch_related("affected_models__provider")
    if models is not None:
        windows = windows.filter(Q(affected_models__isnull=True) | Q(affected_models__in=models)).distinct()
    return windows.order_by("starts_at", "id")


def incidents(*, model: LLMModel | None = None, state: str | None = None) -> QuerySet[Incident]:
    """Incidents newest first, with their model and timeline; ``state``: open or resolved."""
    found = (
        Incident.objects.select_related("model__provider").prefetch_related("updates").order_by("-started_at", "-id")
    )
    if model is not None:
        found = found.filter(model=model)
    if state == "open":
        found = found.filter(resolved_at__isnull=True)
    elif state == "resolved":
        found = found.filter(resolved_at__isnull=False)
    return found


def open_incidents(model_pks: list[int]) -> dict[int, Incident]:
    """The newest open incident of each model (automatic or manual), by model pk."""
    found: dict[int, Incident] = {}
    for incident in incidents(state="open").filter(model_id__in=model_pks):
        if incident.model_id is not None:
            found.setdefault(incident.model_id, incident)
    return found


def incident_payload(incident: Incident) -> dict[str, Any]:
    """An incident as the API, its webhooks and the feed describe it."""
    return {
        "id": incident.pk,
        "model": incident.model.model_id if incident.model else None,
        "title": incident.title,
        "state": "open" if incident.is_open else "resolved",
        "cause": incident.cause,
        "automatic": incident.automatic,
        "started_at": _iso(incident.started_at),
        "resolved_at": _iso(incident.resolved_at),
        "updated_at": _iso(incident.updated_at),
        "updates": [
            {"status": u.status, "message": u.message, "created_at": _iso(u.created_at)} for u in incident.updates.all()
        ],
    }


def model_status(row: ModelRow, *, window: str = "24h", now: datetime | None = None) -> dict[str, Any]:
    """``GET /api/v1/platform-status?model=<id>[&window=1h|24h|7d]``."""
    state = model_states([row], now=now or timezone.now())[row.model.pk]
    incident = open_incidents([row.model.pk]).get(row.model.pk)
    probe = row.probe
    total_tokens = None
    if probe is not None and probe.prompt_tokens is not None and probe.completion_tokens is not None:
        total_tokens = probe.prompt_tokens + probe.completion_tokens
    return {
        "model": row.model_id,
        "ok": bool(probe and probe.ok),
        "status": row.status,
        "http_status": probe.http_status if probe else None,
        "ttfb_ms": probe.ttfb_ms if probe else None,
        "tokens_per_sec": probe.tokens_per_sec if probe else None,
        "total_ms": probe.total_ms if probe else None,
        "usage": {"total_tokens": total_tokens},
        "energy_wh": probe.energy_wh if probe else None,
        "checked_at": _iso(probe.checked_at) if probe else None,
        "availability": _availability(row.stats, ("1h", "24h", "7d")),
        "percentiles": _percentiles(row.stats, window),
        "state": state.state.value,
        "state_reason": state.reason,
        "open_incident": incident_payload(incident) if incident is not None else None,
    }


def latency_figures(window: str = "1h", *, now: datetime | None = None) -> dict[str, LatencyFigure]:
    """Per model id, the p50 TTFT over ``window`` (probes and traffic), its sample count and newest sample,
    from the hourly latency roll-ups: what the latency routing strategy ranks by (``tasks.refresh_stats``
    publishes it to routing). Every model with a TTFT sample in the window; ``samples`` counts the samples
    that measured a TTFT (streamed ones)."""
    windows = statistics.latency_windows(None, window, now or timezone.now())
    figures = {}
    for model_id, latency in windows.items():
        p50 = percentiles.quantile(latency.ttft_ms, 0.5)
        if p50 is not None and latency.newest_at is not None:
            figures[model_id] = LatencyFigure(p50, sum(latency.ttft_ms.values()), latency.newest_at)
    return figures


def history(model: LLMModel, *, hours: int, now: datetime | None = None) -> dict[str, Any]:
    """``GET /api/v1/monitoring/history``: the model's probes of the last ``hours``, oldest first."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    probes = Probe.objects.filter(model=model, kind=ProbeKind.STREAM, checked_at__gte=since).order_by(
        "checked_at", "id"
    )
    return {
        "model": model.model_id,
        "points": [
            {
                "checked_at": _iso(p.checked_at),
                "ttfb_ms": p.ttfb_ms,
                "total_ms": p.total_ms,
                "status": p.status,
                "ok": p.ok,
                # What went wrong, for the chart's mark of a failed probe.
                "http_status": p.http_status,
                "error": p.error,
            }
            for p in probes.only("checked_at", "ttfb_ms", "total_ms", "status", "ok", "http_status", "error")
        ],
    }


def probes_filtered(
    *,
    model_id: str | None,
    provider: str | None,
    since: datetime | None,
    bucket: str | None,
    kind: str | None = None,
) -> QuerySet[Probe]:
    """The probe log, newest first."""
    probes = Probe.objects.select_related("model__provider").order_by("-checked_at", "-id")
    if model_id:
        provider_name, _, name = model_id.partition("/")
        probes = probes.filter(model__provider__name=provider_name, model__name=name)
    if provider:
        probes = probes.filter(model__provider__name=provider)
    if since is not None:
        probes = probes.filter(checked_at__gte=since)
    if bucket:
        probes = probes.filter(status=bucket)
    if kind:
        probes = probes.filter(kind=kind)
    return probes


# The public status page: how many days its uptime bars show, and how many resolved incidents it lists.
UPTIME_DAYS = 90
PAST_INCIDENTS = 20


def public_incidents(*, model: LLMModel | None = None, state: str | None = None) -> QuerySet[Incident]:
    """Incidents the public may see (``/status/``, its feed, ``GET /api/v1/incidents``): those of public
    models, and those of the whole platform. The admin lists them all."""
    return incidents(model=model, state=state).filter(
        Q(model__isnull=True) | Q(model__public=True, model__monitor=True)
    )


@dataclass(frozen=True)
class PublicModel:
    model_id: str
    state: ModelState
    days: list[statistics.Day]
    availability_90d: float | None
    figures: dict[str, float | None]
    open_incident: Incident | None


def status_page(*, now: datetime) -> dict[str, Any]:
    """What ``/status/`` shows: the public models (state, uptime by day, figures), incidents, maintenance."""
    rows = monitored_rows(public=True)
    pks = [row.model.pk for row in rows]
    states = model_states(rows, now=now)
    days = statistics.daily_availability(pks, now, UPTIME_DAYS)
    figures = latency_percentiles({row.model.pk: row.stats for row in rows if row.stats is not None})
    open_by_model = open_incidents(pks)
    models = []
    for row in rows:
        pk = row.model.pk
        cells = [d for d in days[pk] if d.availability is not None]
        models.append(
            PublicModel(
                model_id=row.model_id,
                state=states[pk],
                days=days[pk],
                # A mean of the days, each weighing the same: what the bar shows at a glance.
                availability_90d=round(sum(d.availability or 0 for d in cells) / len(cells), 2) if cells else None,
                figures=figures.get(pk, {}),
                open_incident=open_by_model.get(pk),
            )
        )
    visible = public_incidents()
    return {
        "overall": platform_summary(rows, states),
        "models": models,
        "open_incidents": list(visible.filter(resolved_at__isnull=True)),
        "past_incidents": list(
            visible.filter(resolved_at__isnull=False, started_at__gte=now - timedelta(days=UPTIME_DAYS))[
                :PAST_INCIDENTS
            ]
        ),
        "maintenance": [
            {
                "window": window,
                "in_progress": window.starts_at <= now,
                # Only the public models it touches are named; none: the whole platform.
                "models": [m.model_id for m in window.affected_models.all() if m.pk in pks],
            }
            for window in maintenance_windows(now=now, models=[r.model for r in rows])
        ],
        "updated_at": now,
    }
