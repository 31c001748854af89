"""Writes of the monitor: run probes and store them, refresh statistics, roll up, prune, queue a refresh.

Every function takes its clock as an argument (``now`` for wall time, ``clock`` for measuring), so tests
control time instead of waiting for it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from ledger.accounting import account
from ledger.models import UsageRecord
from routing.engine import handler_for
from routing.selectors import ModelInfo, routing_config
from spignosapi import loops
from spignosapi.api.errors import InvalidRequest

from . import incidents, percentiles, statistics
from .models import LatencyRollup, ModelStats, Probe, ProbeKind, Rollup
from .probes import Outcome, ProbeSpec, Thresholds, classify, probe_all

logger = logging.getLogger(__name__)

Now = Callable[[], datetime]


def monitored_models() -> list[ModelInfo]:
    """Enabled chat models (of enabled providers) with ``monitor`` on, by model id."""
    config = routing_config.get()
    return sorted((m for m in config.models.values() if m.monitor and m.kind == "chat"), key=lambda m: m.model_id)


def _spec() -> ProbeSpec:
    return ProbeSpec(
        prompt=settings.MONITORING_PROBE_PROMPT,
        max_tokens=settings.MONITORING_PROBE_MAX_TOKENS,
        timeout_s=settings.MONITORING_PROBE_TIMEOUT_S,
    )


def _probe_row(info: ModelInfo, outcome: Outcome, thresholds: Thresholds) -> Probe:
    energy_wh = cost_usd = None
    if outcome.ok:
        cost = account(info, outcome.prompt_tokens or 0, outcome.completion_tokens or 0)
        energy_wh, cost_usd = cost.energy_wh, cost.cost_usd
    return Probe(
        model_id=info.pk,
        kind=outcome.kind,
        status=classify(ok=outcome.ok, total_ms=outcome.total_ms, thresholds=thresholds),
        ok=outcome.ok,
        http_status=outcome.http_status,
        error_type=outcome.error_type,
        error=outcome.error,
        ttfb_ms=outcome.ttfb_ms,
        total_ms=outcome.total_ms,
        tokens_per_sec=outcome.tokens_per_sec,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        energy_wh=energy_wh,
        cost_usd=cost_usd,
        checked_at=outcome.checked_at,
    )


def probe_run(
    *, model_pks: Sequence[int], clock: Callable[[], float] = time.monotonic, now: Now = timezone.now
) -> list[Probe]:
    """Probe these models now (concurrently, bounded) and store one probe of each kind each model supports
    (``probe_kinds``); disabled ones are skipped.

    Each model's ``last_probe`` (its streaming probe), statistics and incidents are updated at once, so
    ``/stats`` shows the result.
    """
    config = routing_config.get()
    by_pk = {m.pk: m for m in config.models.values()}
    targets = [(by_pk[pk], kind) for pk in dict.fromkeys(model_pks) if pk in by_pk for kind in probe_kinds(by_pk[pk])]
    if not targets:
        return []
    handler = handler_for(config.providers)
    outcomes = loops.run(
        probe_all(
            handler,
            [(m.model_id, kind) for m, kind in targets],
            _spec(),
            concurrency=settings.MONITORING_PROBE_CONCURRENCY,
            clock=clock,
            now=now,
        )
    )
    thresholds = Thresholds.from_settings()
    # Probes and each model's last_probe land together: a reader never sees a probe that /stats lacks.
    with transaction.atomic():
        rows = Probe.objects.bulk_create(
            [_probe_row(info, o, thresholds) for (info, _), o in zip(targets, outcomes, strict=True)]
        )
        for row in rows:
            if row.kind == ProbeKind.STREAM:
                _set_last_probe(row)
    moment = now()
    model_pks = list(dict.fromkeys(m.pk for m, _ in targets))
    stats_refresh(model_pks=model_pks, now=moment)
    incidents.incidents_update(model_pks=model_pks, now=moment)
    return rows


def probe_kinds(info: ModelInfo) -> list[str]:
    """What a model is probed for: a streamed answer, and what else it is marked as supporting."""
    kinds: list[str] = [ProbeKind.STREAM]
    if info.supports_tools:
        kinds.append(ProbeKind.TOOL_CALL)
    if info.supports_structured_output:
        kinds.append(ProbeKind.STRUCTURED_OUTPUT)
    return kinds


def _set_last_probe(probe: Probe) -> None:
    ModelStats.objects.get_or_create(model_id=probe.model_id)
    # A slower, older run finishing later must not replace a newer probe.
    ModelStats.objects.filter(model_id=probe.model_id).filter(
        Q(last_probe__isnull=True) | Q(last_probe__checked_at__lte=probe.checked_at)
    ).update(last_probe=probe)


def _in_flight_key(pk: int) -> str:
    return f"monitoring:probing:{pk}"


def models_due(*, now: datetime) -> list[int]:
    """Monitored models whose last probe is at least their interval old (or that were never probed).

    Beat wakes the probe task every ``MONITORING_TICK_S``; half a tick of slack keeps a model on a
    600 s interval from slipping to 660 s because its last probe started a few milliseconds after a tick.
    """
    models = monitored_models()
    stats = {
        s.model_id: s
        for s in ModelStats.objects.filter(model_id__in=[m.pk for m in models]).select_related("last_probe")
    }
    slack = settings.MONITORING_TICK_S / 2
    due = []
    for model in models:
        row = stats.get(model.pk)
        interval = row.probe_interval_s if row else settings.MONITORING_PROBE_INTERVAL_S
        last = row.last_probe.checked_at if row and row.last_probe else None
        if last is None or (now - last).total_seconds() >= interval - slack:
            due.append(model.pk)
    return due


def probe_due_models(*, clock: Callable[[], float] = time.monotonic, now: Now = timezone.now) -> list[Probe]:
    """Probe the models that are due, skipping any another run is still probing (a hung model can take
    ``MONITORING_PROBE_TIMEOUT_S``, longer than a tick).

    Two runs can overlap (a restarted beat sends its overdue tick at once): one that read a model as due
    just before another stored its probe and let go of it would probe it again. So what is claimed is read
    again once claimed: a probe stored before the claim is seen then.
    """
    hold = int(settings.MONITORING_PROBE_TIMEOUT_S) + 60
    claimed = [pk for pk in models_due(now=now()) if cache.add(_in_flight_key(pk), 1, timeout=hold)]
    try:
        due = set(models_due(now=now())) if claimed else set()
        return probe_run(model_pks=[pk for pk in claimed if pk in due], clock=clock, now=now)
    finally:
        cache.delete_many([_in_flight_key(pk) for pk in claimed])


def stats_refresh(*, model_pks: Sequence[int] | None = None, now: datetime | None = None) -> int:
    """Recompute availability (1h, 24h, 7d, 30d) and 24 h percentiles; returns how many models."""
    moment = now or timezone.now()
    pks = list(model_pks) if model_pks is not None else [m.pk for m in monitored_models()]
    if not pks:
        return 0
    availability = statistics.availabilities(pks, moment)
    summaries = statistics.recent_summaries(pks, moment)
    validity = statistics.validity_rates(pks, moment)
    model_ids = _model_ids(pks)
    # Every model's refresh (the periodic one) also rolls up the traffic of models the monitor does not probe.
    latency_rollups_refresh(now=moment, model_ids=None if model_pks is None else list(model_ids.values()))
    windows = {
        window: statistics.latency_windows(list(model_ids.values()), window, moment)
        for window in statistics.LATENCY_WINDOWS
    }
    for pk in pks:
        summary = summaries[pk]
        model_id = model_ids.get(pk)
        ModelStats.objects.update_or_create(
            model_id=pk,
            defaults={
                "availability_1h": availability[pk]["1h"],
                "availability_24h": availability[pk]["24h"],
                "availability_7d": availability[pk]["7d"],
                "availability_30d": availability[pk]["30d"],
                "p50_ttfb_ms": summary.p50_ttfb_ms,
                "p95_ttfb_ms": summary.p95_ttfb_ms,
                "p50_total_ms": summary.p50_total_ms,
                "p95_total_ms": summary.p95_total_ms,
                "p50_tokens_per_sec": summary.p50_tokens_per_sec,
                "p95_tokens_per_sec": summary.p95_tokens_per_sec,
                "validity_24h": validity[pk],
                "percentiles": {w: by_model[model_id].payload() for w, by_model in windows.items()} if model_id else {},
                "refreshed_at": moment,
            },
        )
    return len(pks)


def _model_ids(pks: Sequence[int]) -> dict[int, str]:
    wanted = set(pks)
    return {m.pk: m.model_id for m in routing_config.get().models.values() if m.pk in wanted}


# Where each source's samples are: successful probes and successful generations (not embeddings), with
# their model id's column, their time's, and the columns of (TTFT, total time, tokens/s).
_LATENCY_SOURCES: dict[str, tuple[str, tuple[str, str, str]]] = {
    LatencyRollup.Source.PROBES: ("checked_at", ("ttfb_ms", "total_ms", "tokens_per_sec")),
    LatencyRollup.Source.TRAFFIC: ("created_at", ("ttft_ms", "latency_ms", "tokens_per_sec")),
}
_HISTOGRAMS = ("ttft_ms", "total_ms", "tokens_per_sec")
# The hour before the current one is recomputed too: usage records reach the table seconds after their
# request (the usage buffer), a probe run can end after the hour it started in.
_LATE_WRITES = timedelta(hours=1)
_LATENCY_CAUGHT_UP = "monitoring:latency-rollups:until"


def _latency_samples(
    source: str, start: datetime, now: datetime, model_ids: Sequence[str] | None
) -> tuple[QuerySet[Any], str, Callable[[Any], str]]:
    """(successful samples in [start, now] with their ``hour``, the column naming their model, its model id)."""
    models = routing_config.get().models.values()
    if source == LatencyRollup.Source.PROBES:
        samples: QuerySet[Any] = Probe.objects.filter(
            kind=ProbeKind.STREAM, ok=True, checked_at__gte=start, checked_at__lte=now
        )
        if model_ids is not None:
            wanted = set(model_ids)
            samples = samples.filter(model_id__in=[m.pk for m in models if m.model_id in wanted])
        names = {m.pk: m.model_id for m in models}
        return samples.annotate(hour=TruncHour("checked_at", tzinfo=UTC)), "model_id", lambda pk: names.get(pk, "")
    samples = UsageRecord.objects.filter(status="ok", created_at__gte=start, created_at__lte=now).exclude(model="")
    samples = samples.exclude(endpoint__startswith="embeddings")
    if model_ids is not None:
        samples = samples.filter(model__in=model_ids)
    return samples.annotate(hour=TruncHour("created_at", tzinfo=UTC)), "model", str


def _latency_rollups_of(
    source: str, start: datetime, now: datetime, model_ids: Sequence[str] | None
) -> list[LatencyRollup]:
    """One source's hourly roll-ups from ``start`` on, binned and counted by the database."""
    moment, columns = _LATENCY_SOURCES[source]
    samples, model_column, model_id = _latency_samples(source, start, now, model_ids)
    samples = samples.order_by()
    rows: dict[tuple[str, datetime], LatencyRollup] = {}
    for row in samples.values(model_column, "hour").annotate(n=Count("pk"), newest=Max(moment)):
        name = model_id(row[model_column])
        rows[(name, row["hour"])] = LatencyRollup(
            model=name, source=source, hour=row["hour"], samples=row["n"], newest_at=row["newest"]
        )
    for histogram, column in zip(_HISTOGRAMS, columns, strict=True):
        binned = (
            samples.filter(**{f"{column}__isnull": False})
            .annotate(bin=percentiles.bin_of(column))
            .values(model_column, "hour", "bin")
            .annotate(n=Count("pk"))
        )
        for row in binned:
            getattr(rows[(model_id(row[model_column]), row["hour"])], histogram)[str(row["bin"])] = row["n"]
    return [row for (name, _), row in rows.items() if name]  # probes of a model now disabled: not named


def latency_rollups_refresh(*, now: datetime, model_ids: Sequence[str] | None = None) -> int:
    """(Re)compute the hourly latency histograms of probes and traffic, from the hour before ``now``'s on.

    The database bins and counts the samples (``percentiles.bin_of``): what comes back is one row per
    model, hour and bin, however many samples. The refresh of every model (``model_ids`` None) also catches
    up the hours it missed (the beat was down, a first run), back to the longest window. Returns rows written.
    """
    start = statistics.floor_hour(now) - _LATE_WRITES
    if model_ids is None:
        oldest = statistics.floor_hour(now - max(statistics.LATENCY_WINDOWS.values()))
        caught_up = cache.get(_LATENCY_CAUGHT_UP)  # the hour of the last refresh of every model
        start = max(oldest, min(start, caught_up - _LATE_WRITES)) if isinstance(caught_up, datetime) else oldest
    rows = [row for source in _LATENCY_SOURCES for row in _latency_rollups_of(source, start, now, model_ids)]
    LatencyRollup.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["model", "source", "hour"],
        update_fields=["samples", "newest_at", *_HISTOGRAMS],
    )
    if model_ids is None:
        cache.set(_LATENCY_CAUGHT_UP, statistics.floor_hour(now), timeout=None)
    return len(rows)


def rollups_update(*, now: datetime) -> int:
    """Write the hourly and daily roll-ups of every finished hour and day still held as raw probes.

    Idempotent: a roll-up is (re)written only when missing or when its probe count differs from the raw
    probes'. Days are rolled up only when all their raw probes are still kept. Returns rows written.
    """
    cut = statistics.raw_cut(now)
    periods = (
        (Rollup.Period.HOUR, TruncHour, timedelta(hours=1), cut, statistics.floor_hour(now)),
        (Rollup.Period.DAY, TruncDay, timedelta(days=1), statistics.first_full_day(cut), statistics.floor_day(now)),
    )
    written = 0
    for period, trunc, length, start, end in periods:
        if start >= end:
            continue
        counts = (
            Probe.objects.filter(kind=ProbeKind.STREAM, checked_at__gte=start, checked_at__lt=end)
            .annotate(bucket=trunc("checked_at"))
            .values("model_id", "bucket")
            .annotate(n=Count("id"))
        )
        existing = {
            (r.model_id, r.start): r.probes
            for r in Rollup.objects.filter(period=period, start__gte=start, start__lt=end)
        }
        for row in counts:
            key = (row["model_id"], row["bucket"])
            if existing.get(key) == row["n"]:
                continue
            probes = Probe.objects.filter(
                model_id=row["model_id"],
                kind=ProbeKind.STREAM,
                checked_at__gte=row["bucket"],
                checked_at__lt=row["bucket"] + length,
            )
            Rollup.objects.update_or_create(
                model_id=row["model_id"],
                period=period,
                start=row["bucket"],
                defaults=asdict(statistics.summarize(probes)),
            )
            written += 1
    return written


def prune(*, now: datetime) -> dict[str, int]:
    """Roll up what is about to go, then delete raw probes before the cut and roll-ups past retention."""
    rolled = rollups_update(now=now)
    with transaction.atomic():
        _, probes = Probe.objects.filter(checked_at__lt=statistics.raw_cut(now)).delete()
        old = now - timedelta(days=settings.MONITORING_ROLLUP_RETENTION_DAYS)
        _, rollups = Rollup.objects.filter(start__lt=old).delete()
        _, latency = LatencyRollup.objects.filter(hour__lt=now - statistics.LATENCY_RETENTION).delete()
    return {
        "rollups_written": rolled,
        "probes_deleted": probes.get(Probe._meta.label, 0),
        "rollups_deleted": rollups.get(Rollup._meta.label, 0),
        "latency_rollups_deleted": latency.get(LatencyRollup._meta.label, 0),
    }


def refresh_queue(*, model_ids: Sequence[str] | None) -> tuple[str, list[str]]:
    """Queue probes of these models (default: every monitored one) on the worker; (task id, model ids).

    Unknown or disabled model ids are a 400.
    """
    from .tasks import probe_models

    config = routing_config.get()
    if model_ids is None:
        infos = monitored_models()
    else:
        unknown = [m for m in model_ids if m not in config.models]
        if unknown:
            raise InvalidRequest(
                f"Unknown or disabled model(s): {', '.join(unknown)}.", code="unknown_model", param="models"
            )
        infos = [config.models[m] for m in dict.fromkeys(model_ids)]
    task_id = str(uuid.uuid4())
    pks = [m.pk for m in infos]
    transaction.on_commit(lambda: probe_models.apply_async(args=[pks], queue="default", task_id=task_id))
    return task_id, [m.model_id for m in infos]
