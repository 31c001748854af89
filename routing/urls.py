from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("generate", api.generate_view, name="generate"),
    path("routing/config", api.RoutingConfigView.as_view(), name="routing-config"),
    path("routing/categories", api.CategoriesView.as_view(), name="routing-categories"),
    path("routing/categories/<category:name>", api.CategoryDetailView.as_view(), name="routing-category"),
    path("routing/aliases", api.AliasesView.as_view(), name="routing-aliases"),
    path("routing/aliases/<alias:name>", api.AliasDetailView.as_view(), name="routing-alias"),
    path("routing/model-mapping", api.ModelMappingView.as_view(), name="routing-model-mapping"),
    path("routing/circuit-breakers", api.BreakersView.as_view(), name="routing-breakers"),
    path(
        "routing/circuit-breakers/<model_id:model>/reset",
        api.BreakerResetView.as_view(),
        name="routing-breaker-reset",
    ),
]
