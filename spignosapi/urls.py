"""URL configuration: API under /api/v1/, OpenAI- and Anthropic-compatible under /v1/, pages, admin, docs."""

from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from jobs.views import chat
from monitoring import views as monitoring_views
from monitoring.feeds import IncidentsFeed
from rag import api as rag_api
from routing import anthropic_api, openai_api, responses_api

from . import views
from .metrics import metrics_view

api_v1: list[URLPattern | URLResolver] = [
    path("status", views.StatusView.as_view(), name="status"),
    path("", include("accounts.urls")),
    path("", include("routing.urls")),
    path("", include("energy.urls")),
    path("", include("budgets.urls")),
    path("", include("jobs.urls")),
    path("", include("monitoring.urls")),
    path("", include("rag.urls")),
    path("", include("audit.urls")),
]

openai_v1 = [
    path("chat/completions", openai_api.chat_completions_view, name="openai-chat-completions"),
    path("models", openai_api.models_view, name="openai-models"),
    path("models/<model_name:model>", openai_api.model_view, name="openai-model"),
    path("embeddings", rag_api.openai_embeddings_view, name="openai-embeddings"),
    path("responses", responses_api.responses_view, name="openai-responses"),
    path("responses/<response_id:response_id>", responses_api.response_view, name="openai-response"),
    path(
        "responses/<response_id:response_id>/input_items",
        responses_api.input_items_view,
        name="openai-response-input-items",
    ),
    # Anthropic-compatible (its SDKs' base_url is the host: they post to /v1/messages)
    path("messages", anthropic_api.messages_view, name="anthropic-messages"),
    path("messages/count_tokens", anthropic_api.count_tokens_view, name="anthropic-count-tokens"),
]

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/full", views.health_full, name="health-full"),
    path("api/v1/", include(api_v1)),
    path("v1/", include(openai_v1)),
    path("chat/completions", openai_api.chat_completions_alias_view, name="chat-completions-alias"),
    path("metrics", metrics_view, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("swagger/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("admin/", admin.site.urls),
    path("chat/", chat, name="chat"),
    path("", monitoring_views.dashboard, name="dashboard"),
    path("results/", monitoring_views.results, name="results"),
    path("status/", monitoring_views.status_page, name="status-page"),
    path("status/feed/", IncidentsFeed(), name="status-feed"),
]

handler400 = "spignosapi.api.errors.json_400"
handler404 = "spignosapi.api.errors.json_404"
handler500 = "spignosapi.api.errors.json_500"
