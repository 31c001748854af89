"""Reads of the monitor: what the status API, the dashboard's JSON and the probe log show.

Platform status (Statuspage vocabulary), from each monitored model's last probe: a model is *down* when
its last probe failed, was slower than the lagging bound, or never happened (bucket ``unknown``);
*slow* when congestion or lagging. maintenance when the admin's flag is on; otherwise major_outage when
every model is down, partial_outage when some are, degraded when none is down but some are slow, else
operational.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from routing.models import LLMModel

from .models import Bucket, ModelStats, MonitoringSettings, Probe

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

    @property
    def down(self) -> bool:
        return self.probe is None or not self.probe.ok or self.status == Bucket.UNKNOWN


def monitored_rows(model_ids: list[str] | None = None) -> list[ModelRow]:
    """Monitored, enabled models (of enabled providers) with their statistics and last probe, by id."""
    models = LLMModel.objects.filter(monitor=True, kind="chat", enabled=True, provider__enabled=True).select_related(
        "provider"
    )
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


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _availability(stats: ModelStats | None, windows: tuple[str, ...]) -> dict[str, float | None]:
    return {w: getattr(stats, f"availability_{w}") if stats else None for w in windows}


def stats_payload() -> dict[str, Any]:
    """``GET /api/v1/monitoring/stats``: every monitored model's last probe and statistics."""
    rows = monitored_rows()
    models = []
    for row in rows:
        probe, stats = row.probe, row.stats
        models.append(
            {
                "model": row.model_id,
                "provider": row.model.provider.name,
                "status": row.status,
                "ok": bool(probe and probe.ok),
                "http_status": probe.http_status if probe else None,
                "error": (probe.error or None) if probe else None,
                "ttfb_ms": probe.ttfb_ms if probe else None,
                "total_ms": probe.total_ms if probe else None,
                "tokens_per_sec": probe.tokens_per_sec if probe else None,
                "energy_wh": probe.energy_wh if probe else None,
                "checked_at": _iso(probe.checked_at) if probe else None,
                "availability": _availability(stats, ("1h", "24h", "7d", "30d")),
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


def platform_status() -> dict[str, Any]:
    """``GET /api/v1/platform-status``."""
    rows = monitored_rows()
    down = [r.model_id for r in rows if r.down]
    slow = [r.model_id for r in rows if not r.down and r.status in SLOW]
    flag = MonitoringSettings.load()
    total = len(rows)
    if flag.maintenance:
        status, message = "maintenance", flag.maintenance_message or "Scheduled maintenance in progress."
    elif total == 0:
        status, message = "operational", "No models are monitored."
    elif len(down) == total:
        status, message = "major_outage", "Every model is down."
    elif down:
        status, message = "partial_outage", f"Down: {', '.join(down)}."
    elif slow:
        status, message = "degraded", f"Slow: {', '.join(slow)}."
    else:
        status, message = "operational", "All models are operational."
    return {
        "status": status,
        "message": message,
        "updated_at": _iso(_updated_at(rows)),
        "stats": {"operational_models": total - len(down), "total_models": total},
        "failed_models": down,
    }


def model_status(row: ModelRow) -> dict[str, Any]:
    """``GET /api/v1/platform-status?model=<id>``."""
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
    }


def history(model: LLMModel, *, hours: int, now: datetime | None = None) -> dict[str, Any]:
    """``GET /api/v1/monitoring/history``: the model's probes of the last ``hours``, oldest first."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    probes = Probe.objects.filter(model=model, checked_at__gte=since).order_by("checked_at", "id")
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
    *, model_id: str | None, provider: str | None, since: datetime | None, bucket: str | None
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
    return probes
