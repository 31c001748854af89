"""Energy coefficients (versioned: a published value is never edited into another)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from .models import EnergyCoefficient
from .services import energy_changed

# What a version is: fixed once saved. Source, link and notes may still be corrected.
VERSION_FIELDS = [
    "model",
    "valid_from",
    "output_kwh_per_m_low",
    "output_kwh_per_m",
    "output_kwh_per_m_high",
    "input_kwh_per_m_low",
    "input_kwh_per_m",
    "input_kwh_per_m_high",
    "token_basis",
    "scope",
    "pue",
    "estimated",
]


@admin.register(EnergyCoefficient)
class EnergyCoefficientAdmin(admin.ModelAdmin[EnergyCoefficient]):
    list_display = [
        "model",
        "output_kwh_per_m_low",
        "output_kwh_per_m",
        "output_kwh_per_m_high",
        "input_kwh_per_m",
        "token_basis",
        "scope",
        "pue",
        "estimated",
        "valid_from",
        "source",
    ]
    list_filter = ["scope", "token_basis", "estimated"]
    search_fields = ["model", "source"]
    date_hierarchy = "valid_from"
    fieldsets = [
        (None, {"fields": ["model", "valid_from", "token_basis", "scope", "pue", "estimated"]}),
        (
            "kWh per million tokens",
            {
                "fields": [
                    ("output_kwh_per_m_low", "output_kwh_per_m", "output_kwh_per_m_high"),
                    ("input_kwh_per_m_low", "input_kwh_per_m", "input_kwh_per_m_high"),
                ]
            },
        ),
        ("Source", {"fields": ["source", "source_url", "notes"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: EnergyCoefficient | None = None) -> list[str]:
        # Usage records copied these values; a new value is a new version with a later valid-from.
        return VERSION_FIELDS if obj is not None else []

    def save_model(self, request: HttpRequest, obj: EnergyCoefficient, form: ModelForm[Any], change: bool) -> None:
        super().save_model(request, obj, form, change)
        energy_changed()

    def delete_model(self, request: HttpRequest, obj: EnergyCoefficient) -> None:
        super().delete_model(request, obj)
        energy_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[EnergyCoefficient]) -> None:
        super().delete_queryset(request, queryset)
        energy_changed()
