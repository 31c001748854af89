"""Admin: the probe log and roll-ups (read-only), each model's probe interval, the maintenance flag and
windows, incidents (manual ones written here, automatic ones given updates) with their timelines.

The beat schedules themselves ("monitoring: probe models", "... refresh stats", "... prune") are rows of
django-celery-beat's "Periodic tasks" in the same admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from spignosapi import webhooks

from .models import Incident, IncidentUpdate, MaintenanceWindow, ModelStats, MonitoringSettings, Probe, Rollup
from .selectors import incident_payload


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


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin[MaintenanceWindow]):
    list_display = ["title", "starts_at", "ends_at", "models_affected"]
    search_fields = ["title", "message"]
    date_hierarchy = "starts_at"
    filter_horizontal = ["affected_models"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[MaintenanceWindow]:
        return super().get_queryset(request).prefetch_related("affected_models__provider")

    @admin.display(description="models")
    def models_affected(self, obj: MaintenanceWindow) -> str:
        return ", ".join(m.model_id for m in obj.affected_models.all()) or "every model"


class IncidentUpdateInline(admin.TabularInline[IncidentUpdate, Incident]):
    model = IncidentUpdate
    extra = 1
    fields = ["created_at", "status", "message"]


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin[Incident]):
    """An operator reports an incident (cause "manual") and writes its updates; setting "resolved at"
    resolves it. Either change is announced by webhook, like the monitor's own incidents."""

    list_display = ["title", "model", "cause", "automatic", "started_at", "resolved_at"]
    list_filter = ["cause", "automatic", ("resolved_at", admin.EmptyFieldListFilter), "model__provider"]
    list_select_related = ["model__provider"]
    search_fields = ["title", "model__name", "model__provider__name", "updates__message"]
    autocomplete_fields = ["model"]
    date_hierarchy = "started_at"
    fields = ["title", "model", "cause", "automatic", "started_at", "resolved_at", "updated_at"]
    readonly_fields = ["automatic", "updated_at"]
    inlines = [IncidentUpdateInline]

    def save_related(self, request: HttpRequest, form: ModelForm[Incident], formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # "Updated at" (the feed entry's <updated>) is when the incident last changed for its readers: its start,
        # its newest update or its resolution, whichever is latest; not when the form was saved.
        incident = form.instance
        moments = [incident.started_at, *(u.created_at for u in incident.updates.all())]
        if incident.resolved_at is not None:
            moments.append(incident.resolved_at)
        Incident.objects.filter(pk=incident.pk).update(updated_at=max(moments))
        incident.refresh_from_db()
        # Announced once its timeline is saved, so the webhook carries it.
        was_open = not change or form.initial.get("resolved_at") is None
        if not change:
            webhooks.notify("incident.opened", incident_payload(incident))
        if was_open and incident.resolved_at is not None:
            webhooks.notify("incident.resolved", incident_payload(incident))
