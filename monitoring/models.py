"""Probes of the monitored models, their hourly and daily roll-ups, per-model statistics, the maintenance
flag and windows, and incidents with their timelines.

A probe is one streaming request the monitor made to one model; it is not a usage record of any key. Its
kind says what it asked (a plain answer, a tool call, a JSON-schema answer); a probe of the last two is ok
only when the call succeeded and its answer is valid.
Times are milliseconds and are null when unknown (a failed probe has no time to first token): never 0.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


class Bucket(models.TextChoices):
    """How a probe went, from its total time; errors (and never-probed models) are unknown."""

    SMOOTH = "smooth"
    AVAILABLE = "available"
    CONGESTION = "congestion"
    LAGGING = "lagging"
    UNKNOWN = "unknown"


class ProbeKind(models.TextChoices):
    """What a probe asks: a streamed answer (every monitored model; its status, availability and history),
    a forced tool call, or an answer in a JSON schema (models marked as supporting them; their validity)."""

    STREAM = "stream"
    TOOL_CALL = "tool_call"
    STRUCTURED_OUTPUT = "structured_output"


class Probe(models.Model):
    model = models.ForeignKey("routing.LLMModel", on_delete=models.CASCADE, related_name="probes")
    kind = models.CharField(max_length=20, choices=ProbeKind.choices, default=ProbeKind.STREAM)
    status = models.CharField(max_length=12, choices=Bucket.choices)
    ok = models.BooleanField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_type = models.CharField(max_length=60, blank=True, help_text="The llm error code, e.g. timeout.")
    error = models.CharField(max_length=500, blank=True)
    ttfb_ms = models.FloatField(null=True, blank=True, help_text="Request to first token.")
    total_ms = models.FloatField(null=True, blank=True)
    tokens_per_sec = models.FloatField(null=True, blank=True, help_text="Output tokens after the first one.")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    energy_wh = models.FloatField(null=True, blank=True)
    cost_usd = models.FloatField(null=True, blank=True)
    checked_at = models.DateTimeField(db_index=True, help_text="When the probe started.")

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["model", "checked_at"])]

    def __str__(self) -> str:
        return f"{self.model_id} {self.status} at {self.checked_at:%Y-%m-%d %H:%M:%S}"

    @property
    def rate_limited(self) -> bool:
        return self.http_status == 429 or self.error_type == "rate_limited"


class Rollup(models.Model):
    """The probes of one model over one hour or one day, kept after the raw probes are pruned."""

    class Period(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    model = models.ForeignKey("routing.LLMModel", on_delete=models.CASCADE, related_name="probe_rollups")
    period = models.CharField(max_length=4, choices=Period.choices)
    start = models.DateTimeField(db_index=True)
    probes = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Failed probes, 429s excluded.")
    rate_limited = models.PositiveIntegerField(default=0)
    p50_ttfb_ms = models.FloatField(null=True, blank=True)
    p95_ttfb_ms = models.FloatField(null=True, blank=True)
    p50_total_ms = models.FloatField(null=True, blank=True)
    p95_total_ms = models.FloatField(null=True, blank=True)
    p50_tokens_per_sec = models.FloatField(null=True, blank=True)
    p95_tokens_per_sec = models.FloatField(null=True, blank=True)
    energy_wh = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-start", "model"]
        constraints = [models.UniqueConstraint(fields=["model", "period", "start"], name="unique_rollup")]

    def __str__(self) -> str:
        return f"{self.model_id} {self.period} {self.start:%Y-%m-%d %H:%M}"


class LatencyRollup(models.Model):
    """One model's latency over one hour from one source, as mergeable histograms (``monitoring.percentiles``).

    ``probes`` counts the monitor's successful probes; ``traffic`` the gateway's successful requests (usage
    records). The percentiles of any window are these hours' histograms added together.
    """

    class Source(models.TextChoices):
        PROBES = "probes"
        TRAFFIC = "traffic"

    # The model id ("provider/name"), as usage records name it: traffic outlives a deleted model row.
    model = models.CharField(max_length=260)
    source = models.CharField(max_length=8, choices=Source.choices)
    hour = models.DateTimeField(help_text="The start of the hour (UTC).")
    samples = models.PositiveIntegerField(default=0)
    newest_at = models.DateTimeField(null=True, blank=True, help_text="The newest sample counted.")
    ttft_ms = models.JSONField(default=dict, help_text="Histogram: bin -> count.")
    total_ms = models.JSONField(default=dict, help_text="Histogram: bin -> count.")
    tokens_per_sec = models.JSONField(default=dict, help_text="Histogram: bin -> count.")

    class Meta:
        ordering = ["-hour", "model", "source"]
        constraints = [models.UniqueConstraint(fields=["model", "source", "hour"], name="unique_latency_rollup")]
        indexes = [models.Index(fields=["hour"], name="latency_rollup_hour")]

    def __str__(self) -> str:
        return f"{self.model} {self.source} {self.hour:%Y-%m-%d %H:%M}"


def default_probe_interval() -> int:
    return int(settings.MONITORING_PROBE_INTERVAL_S)


class ModelStats(models.Model):
    """One monitored model: its probe interval (edited by an admin) and statistics (refreshed by a task).

    ``last_probe`` is updated as soon as a probe is stored, so the dashboard sees a refresh at once;
    availability and percentiles are recomputed by the statistics refresh.
    """

    model = models.OneToOneField("routing.LLMModel", on_delete=models.CASCADE, related_name="monitor_stats")
    probe_interval_s = models.PositiveIntegerField(
        default=default_probe_interval,
        validators=[MinValueValidator(10)],
        help_text="Seconds between two probes of this model.",
    )
    last_probe = models.ForeignKey(Probe, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    availability_1h = models.FloatField(null=True, blank=True)
    availability_24h = models.FloatField(null=True, blank=True)
    availability_7d = models.FloatField(null=True, blank=True)
    availability_30d = models.FloatField(null=True, blank=True)
    p50_ttfb_ms = models.FloatField(null=True, blank=True)
    p95_ttfb_ms = models.FloatField(null=True, blank=True)
    p50_total_ms = models.FloatField(null=True, blank=True)
    p95_total_ms = models.FloatField(null=True, blank=True)
    p50_tokens_per_sec = models.FloatField(null=True, blank=True)
    p95_tokens_per_sec = models.FloatField(null=True, blank=True)
    validity_24h = models.JSONField(
        default=dict, blank=True, help_text="Percent of valid answers per probe kind (tool call, structured output)."
    )
    percentiles = models.JSONField(
        default=dict, blank=True, help_text="p50/p95/p99 per window (1h, 24h, 7d), probes and traffic together."
    )
    refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "model statistics and schedule"
        verbose_name_plural = "model statistics and schedules"
        ordering = ["model__provider__name", "model__name"]

    def __str__(self) -> str:
        return str(self.model)


class MonitoringSettings(models.Model):
    """The one row (pk 1) an admin edits: maintenance on/off and the message the status page shows."""

    maintenance = models.BooleanField(default=False)
    maintenance_message = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "monitoring settings"
        verbose_name_plural = "monitoring settings"

    def __str__(self) -> str:
        return "Maintenance on" if self.maintenance else "Maintenance off"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> MonitoringSettings:
        row, _ = cls.objects.get_or_create(pk=1)
        return row


class MaintenanceWindow(models.Model):
    """Planned work an admin announces: its models show ``maintenance`` and open no incident meanwhile."""

    title = models.CharField(max_length=200)
    message = models.TextField(blank=True, help_text="Shown on the status page.")
    starts_at = models.DateTimeField(db_index=True)
    ends_at = models.DateTimeField(db_index=True)
    affected_models = models.ManyToManyField(
        "routing.LLMModel", blank=True, related_name="maintenance_windows", help_text="None selected: every model."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")), name="maintenance_ends_after")
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%Y-%m-%d %H:%M} UTC)"


class Incident(models.Model):
    """Something that went wrong with a model (or, for a manual incident, possibly the whole platform).

    Open while ``resolved_at`` is null. The monitor opens one automatically (``automatic``) and resolves it on
    recovery; at most one automatic incident per model is open at a time, a database constraint, so two
    workers seeing the same failures open one incident between them.
    """

    class Cause(models.TextChoices):
        PROBES = "probes", "Consecutive failed probes"
        BREAKER = "breaker", "Circuit breaker open"
        MANUAL = "manual", "Reported by an operator"

    model = models.ForeignKey(
        "routing.LLMModel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="incidents",
        help_text="Empty: the incident concerns the whole platform.",
    )
    title = models.CharField(max_length=200)
    cause = models.CharField(max_length=10, choices=Cause.choices, default=Cause.MANUAL)
    automatic = models.BooleanField(default=False, editable=False)
    started_at = models.DateTimeField(db_index=True, default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="Empty while the incident is open.")
    updated_at = models.DateTimeField(default=timezone.now, help_text="When its last update was posted.")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(automatic=True, resolved_at__isnull=True),
                name="one_open_automatic_incident_per_model",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class IncidentUpdate(models.Model):
    """One entry of an incident's timeline (Statuspage's vocabulary)."""

    class Status(models.TextChoices):
        INVESTIGATING = "investigating"
        IDENTIFIED = "identified"
        MONITORING = "monitoring"
        RESOLVED = "resolved"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="updates")
    status = models.CharField(max_length=13, choices=Status.choices)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.status}: {self.message[:60]}"
