"""Admin: the probe log and roll-ups (read-only), each model's probe interval, the maintenance flag.

The beat schedules themselves ("monitoring: probe models", "... refresh stats", "... prune") are rows of
django-celery-beat's "Periodic tasks" in the same admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import ModelStats, MonitoringSettings, Probe, Rollup


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Probe)
class ProbeAdmin(ReadOnly, admin.ModelAdmin[Probe]):
    list_display = [
        "checked_at",
        "model",
        "kind",
        "status",
        "ok",
        "http_status",
        "error_type",
        "ttfb_ms",
        "total_ms",
        "tokens_per_sec",
        "energy_wh",
    ]
    list_filter = ["kind", "status", "ok", "error_type", "model__provider"]
    list_select_related = ["model__provider"]
    search_fields = ["model__name", "model__provider__name", "error"]
    date_hierarchy = "checked_at"


@admin.register(Rollup)
class RollupAdmin(ReadOnly, admin.ModelAdmin[Rollup]):
    list_display = ["start", "period", "model", "probes", "successes", "errors", "rate_limited", "p50_total_ms"]
    list_filter = ["period", "model__provider"]
    list_select_related = ["model__provider"]
    date_hierarchy = "start"


@admin.register(ModelStats)
class ModelStatsAdmin(admin.ModelAdmin[ModelStats]):
    list_display = ["model", "probe_interval_s", "last_status", "availability_24h", "p50_total_ms", "refreshed_at"]
    list_editable = ["probe_interval_s"]
    list_select_related = ["model__provider", "last_probe"]
    autocomplete_fields = ["model"]
    readonly_fields = [
        "last_probe",
        "availability_1h",
        "availability_24h",
        "availability_7d",
        "availability_30d",
        "p50_ttfb_ms",
        "p95_ttfb_ms",
        "p50_total_ms",
        "p95_total_ms",
        "p50_tokens_per_sec",
        "p95_tokens_per_sec",
        "refreshed_at",
    ]

    @admin.display(description="last status")
    def last_status(self, obj: ModelStats) -> str:
        return obj.last_probe.status if obj.last_probe else "unknown"


@admin.register(MonitoringSettings)
class MonitoringSettingsAdmin(admin.ModelAdmin[MonitoringSettings]):
    list_display = ["__str__", "maintenance_message", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not MonitoringSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
