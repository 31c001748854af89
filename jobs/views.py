"""The ``/chat/`` page: submits async jobs and renders their tokens live over the WebSocket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from routing.selectors import routing_config


@login_required
@ensure_csrf_cookie
def chat(request: HttpRequest) -> HttpResponse:
    # The picker offers what a request may name: a category (its chain) or a model; none means the router picks.
    # Read from the routing snapshot the gateway itself routes with, so the page never offers what it refuses.
    config = routing_config.get()
    context = {
        "demo_only": config.demo_only,
        "categories": sorted(config.categories.values(), key=lambda category: category.name),
        "models": sorted(m.model_id for m in config.models.values() if m.kind == "chat"),
    }
    return render(request, "chat.html", context)
