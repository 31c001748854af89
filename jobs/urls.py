from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("generate/async", api.generate_async_view, name="generate-async"),
    path("jobs/<uuid:job_id>", api.JobDetailView.as_view(), name="job-detail"),
    path("stream/<session:session_id>", api.stream_view, name="job-stream"),
    path("stats", api.StatsView.as_view(), name="stats"),
]
