from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("keys", api.KeysView.as_view(), name="keys"),
    path("keys/me", api.KeyMeView.as_view(), name="key-me"),
    path("keys/<key_prefix:prefix>", api.KeyDetailView.as_view(), name="key"),
    path("keys/<key_prefix:prefix>/rotate", api.KeyRotateView.as_view(), name="key-rotate"),
    path("teams", api.TeamsView.as_view(), name="teams"),
    path("teams/<team:name>", api.TeamDetailView.as_view(), name="team"),
]
