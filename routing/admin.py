from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from .models import Category, ChainEntry, CircuitBreaker, LLMModel, ModelAlias, ModelLatency, Provider
from .services import breaker_reset, routing_changed


class ReloadsRouting:
    """Every admin change to routing tables makes every process reload its routing snapshot.

    A mixin: the ModelAdmin it is mixed into defines the methods it extends, which mypy cannot see from here
    (hence the ``misc`` ignores)."""

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        routing_changed()

    def save_related(self, request: HttpRequest, form: ModelForm[Any], formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # type: ignore[misc]
        routing_changed()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)  # type: ignore[misc]
        routing_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        routing_changed()


class ChainInline(admin.TabularInline[ChainEntry, Category]):
    model = ChainEntry
    extra = 1
    ordering = ["position"]
    autocomplete_fields = ["model"]
    fields = ["position", "model"]


@admin.register(Category)
class CategoryAdmin(ReloadsRouting, admin.ModelAdmin[Category]):
    list_display = ["name", "description", "strategy", "builtin", "chain_display"]
    list_filter = ["strategy"]
    search_fields = ["name", "description"]
    readonly_fields = ["builtin"]
    inlines = [ChainInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Category | None = None) -> list[str]:
        # The router and the settings name the built-in categories (tools, the default): keep their names.
        return ["name", "builtin"] if obj is not None and obj.builtin else ["builtin"]

    @admin.display(description="model chain")
    def chain_display(self, obj: Category) -> str:
        return " → ".join(
            str(entry.model) for entry in obj.chain.select_related("model__provider").order_by("position")
        )

    def has_delete_permission(self, request: HttpRequest, obj: Category | None = None) -> bool:
        return not (obj is not None and obj.builtin) and super().has_delete_permission(request, obj)


@admin.register(Provider)
class ProviderAdmin(ReloadsRouting, admin.ModelAdmin[Provider]):
    list_display = [
        "name",
        "kind",
        "base_url",
        "api_key_env",
        "drop_params",
        "grid_gco2e_per_kwh",
        "pue",
        "enabled",
        "is_demo",
    ]
    list_filter = ["kind", "enabled", "drop_params"]
    search_fields = ["name"]


@admin.register(LLMModel)
class LLMModelAdmin(ReloadsRouting, admin.ModelAdmin[LLMModel]):
    list_display = [
        "__str__",
        "kind",
        "price_in_per_m",
        "price_out_per_m",
        "energy_kwh_per_m",
        "rpm_budget",
        "tpm_budget",
        "enabled",
        "monitor",
        "supports_tools",
        "supports_structured_output",
        "public",
    ]
    list_filter = ["provider", "kind", "enabled", "monitor", "public", "supports_tools", "supports_structured_output"]
    search_fields = ["name", "provider__name"]
    list_select_related = ["provider"]


@admin.register(ModelAlias)
class ModelAliasAdmin(ReloadsRouting, admin.ModelAdmin[ModelAlias]):
    list_display = ["name", "category", "model", "updated_at"]
    list_filter = ["category"]
    search_fields = ["name", "category__name", "model__name", "model__provider__name"]
    list_select_related = ["category", "model__provider"]
    autocomplete_fields = ["category", "model"]
    fields = ["name", "category", "model"]


@admin.action(description="Reset (close) the selected breakers")
def reset_breakers(modeladmin: Any, request: HttpRequest, queryset: QuerySet[CircuitBreaker]) -> None:
    count = 0
    for breaker in queryset.select_related("model__provider"):
        breaker_reset(model=breaker.model)
        count += 1
    messages.success(request, f"{count} breaker(s) reset.")


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin[CircuitBreaker]):
    list_display = ["model", "state", "consecutive_failures", "opened_at", "last_error", "updated_at"]
    list_filter = ["state"]
    actions = [reset_breakers]
    readonly_fields = ["model", "state", "consecutive_failures", "opened_at", "trial_started_at", "last_error"]
    list_select_related = ["model__provider"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ModelLatency)
class ModelLatencyAdmin(admin.ModelAdmin[ModelLatency]):
    """What the latency strategy ranks by, as monitoring last published it: read-only (monitoring writes it)."""

    list_display = ["model", "p50_ttft_ms", "samples", "measured_at", "updated_at"]
    list_select_related = ["model__provider"]
    readonly_fields = ["model", "p50_ttft_ms", "samples", "measured_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ModelLatency | None = None) -> bool:
        return False
