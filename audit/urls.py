from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("audit", api.AuditView.as_view(), name="audit"),
]
