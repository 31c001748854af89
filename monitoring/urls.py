"""The monitoring API under /api/v1/ (the dashboard pages are routed in spignosapi/urls.py)."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("platform-status", api.PlatformStatusView.as_view(), name="platform-status"),
    path("incidents", api.IncidentsView.as_view(), name="incidents"),
    path("monitoring/stats", api.StatsView.as_view(), name="monitoring-stats"),
    path("monitoring/history", api.HistoryView.as_view(), name="monitoring-history"),
    path("monitoring/results", api.ResultsView.as_view(), name="monitoring-results"),
    path("monitoring/refresh", api.RefreshView.as_view(), name="monitoring-refresh"),
]
