from __future__ import annotations

from typing import Any

from adminsortable2.admin import SortableAdminBase, SortableTabularInline
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse

from .models import Category, ChainEntry, CircuitBreaker, LLMModel, ModelAlias, ModelLatency, Provider
from .services import breaker_reset, normalized_keywords, routing_changed


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


class ChainInline(SortableTabularInline):  # type: ignore[misc]  # adminsortable2 ships no types
    """The chain, in order: rows are dragged into place (django-admin-sortable2 renumbers ``position``)."""

    model = ChainEntry
    extra = 1
    ordering = ["position"]
    autocomplete_fields = ["model"]
    fields = ["position", "model"]


class KeywordListField(forms.CharField):
    """A list of keywords edited as text, one per line (commas also separate), stored as the JSON list the
    router reads: trimmed, lower-cased, without duplicates (``normalized_keywords``, as the API stores them)."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 40})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(keyword) for keyword in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]  # a list, not CharField's str
        text = super().to_python(value) or ""
        return normalized_keywords(text.replace(",", "\n").splitlines())


class CategoryForm(forms.ModelForm[Category]):
    keywords = KeywordListField(
        required=False, help_text="One keyword or phrase per line (or separated by commas); case does not matter."
    )

    class Meta:
        model = Category
        fields = "__all__"

    def clean_keywords(self) -> list[str]:
        keywords: list[str] = self.cleaned_data["keywords"]
        stored = self.instance.keywords if self.instance.pk else None
        # The same keywords in another order (a seeded list is not sorted) are no change: keep them as
        # stored, so a save that edits something else does not rewrite them (nor log them as changed).
        if isinstance(stored, list) and sorted(stored) == keywords:
            return stored
        return keywords


@admin.register(Category)
class CategoryAdmin(ReloadsRouting, SortableAdminBase, admin.ModelAdmin[Category]):  # type: ignore[misc]
    form = CategoryForm
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
    search_fields = ["model__name", "model__provider__name"]
    ordering = ["model__provider__name", "model__name"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # A breaker's row appears with its model's first failure; until then the model's breaker is closed. The
        # list shows every chat model (what has a breaker: the models GET /api/v1/routing/circuit-breakers lists)
        # with its state, so the missing rows are written as what they stand for (a closed breaker: what a reset
        # writes too), never on the gateway's path.
        missing = LLMModel.objects.filter(kind=LLMModel.Kind.CHAT, breaker__isnull=True).values_list("pk", flat=True)
        CircuitBreaker.objects.bulk_create([CircuitBreaker(model_id=pk) for pk in missing], ignore_conflicts=True)
        return super().changelist_view(request, extra_context)

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
