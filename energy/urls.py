from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("energy/summary", api.EnergySummaryView.as_view(), name="energy-summary"),
    path("energy/filters", api.EnergyFiltersView.as_view(), name="energy-filters"),
]
