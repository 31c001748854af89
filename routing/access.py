"""Which models a key may use: its allow-list and its team's (contract section 3, "Keys, teams").

A pattern is a model id (``openai/gpt-4o-mini``), a glob of ids (``openai/*``: ``*`` and ``?`` are the
wildcards) or a category's name (``code``: every model of its chain). An empty list allows every model; a
key of a team must pass both lists. A request that names a model the key may not use is a 403
``model_not_allowed``; a routed one (router, a category, an alias) walks only the allowed models of its
chain, and is a 403 when none is left.

Pure and in memory (the key table and the routing snapshot): a few string comparisons per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from accounts.selectors import KeyInfo

from .errors import GatewayError, Reason
from .router import Route
from .selectors import RoutingConfig

_WILDCARDS = frozenset("*?")


def _matches(patterns: Sequence[str], model_id: str, config: RoutingConfig) -> bool:
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == model_id:
            return True
        if _WILDCARDS.isdisjoint(pattern):
            category = config.categories.get(pattern)
            if category is not None and model_id in category.chain:
                return True
        elif fnmatchcase(model_id, pattern):
            return True
    return False


def model_allowed(key: KeyInfo | None, model_id: str, config: RoutingConfig) -> bool:
    """May ``key`` use ``model_id``? (No key: a dashboard user's job, which no allow-list restricts.)"""
    if key is None:
        return True
    return _matches(key.allowed_models, model_id, config) and _matches(key.team_allowed_models, model_id, config)


def restricts(key: KeyInfo | None) -> bool:
    return key is not None and bool(key.allowed_models or key.team_allowed_models)


def not_allowed(message: str) -> GatewayError:
    return GatewayError(message, reason=Reason.FORBIDDEN, code="model_not_allowed", param="model")


def check_model(key: KeyInfo | None, model_id: str, config: RoutingConfig) -> None:
    """403 ``model_not_allowed`` unless ``key`` may use ``model_id``."""
    if not model_allowed(key, model_id, config):
        raise not_allowed(f"This API key may not use the model {model_id!r}.")


def allowed_route(key: KeyInfo | None, route: Route, config: RoutingConfig) -> Route:
    """``route`` with only the models ``key`` may use; 403 ``model_not_allowed`` when none is left."""
    if not restricts(key):
        return route
    chain = tuple(model_id for model_id in route.chain if model_allowed(key, model_id, config))
    if chain == route.chain:
        return route
    if not chain:
        if route.route_mode == "model" or len(route.chain) == 1:
            raise not_allowed(f"This API key may not use the model {route.chain[0]!r}.")
        raise not_allowed(f"This API key may use none of the models of the category {route.category!r}.")
    return Route(category=route.category, chain=chain, route_mode=route.route_mode)
