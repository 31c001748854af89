"""Choosing a category for a request: by an explicit model or category, tools, keywords or a classifier.

Modes (contract section 6): ``keywords`` (default) scores categories by the keywords found in the prompt;
``llm`` asks a small classifier model for one category name (short timeout, keywords on any failure);
``hybrid`` uses keywords, and the classifier only when no keyword matched; ``semantic`` picks the category
whose example requests are most similar to the request (embeddings, ``routing/semantic.py``; keywords
when the embedding model fails).

``ROUTING_MODES`` lists them: a new mode goes there (and in ``choose_route``), saying whether choosing a
category calls a model, which decides where the gateway routes it (``RoutingMode.routes_before_limits``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import GatewayError, Reason
from .models import RESERVED_MODEL_NAMES
from .selectors import AliasInfo, RoutingConfig

logger = logging.getLogger(__name__)

TOOLS_CATEGORY = "tools"
ROUTER_ALIASES = RESERVED_MODEL_NAMES  # (no model alias may take these names)


@dataclass(frozen=True, slots=True)
class RoutingMode:
    name: str
    # Choosing is pure (no model is called): the gateway routes before the limits, so that the chain's
    # breaker states come back in the limits' Redis round trip. A mode that calls a model (a classifier,
    # embeddings) routes after them: a request the limits refuse must cost no model call.
    routes_before_limits: bool


ROUTING_MODES: Mapping[str, RoutingMode] = {
    mode.name: mode
    for mode in (
        RoutingMode("keywords", routes_before_limits=True),
        RoutingMode("llm", routes_before_limits=False),
        RoutingMode("hybrid", routes_before_limits=False),
        RoutingMode("semantic", routes_before_limits=False),
    )
}


@dataclass(frozen=True, slots=True)
class Route:
    category: str
    chain: tuple[str, ...]
    # How the category was chosen: model, category, alias (the request named a model alias), tools,
    # keywords, llm, semantic, default.
    route_mode: str
    # Model id → why the category's strategy put it where it is in ``chain`` (empty: the chain as written).
    reasons: Mapping[str, str] = field(default_factory=dict)


def routing_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """What the router reads: the last user message (the current request, not the whole history)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def keyword_category(config: RoutingConfig, text: str) -> str | None:
    """The category with most keyword hits; ties go to the category listed first (alphabetical)."""
    scores: dict[str, int] = {}
    for word in config.words_of(text):
        for category in config.single_words.get(word, ()):
            scores[category] = scores.get(category, 0) + 1
    lowered = text.lower() if config.phrases else ""
    for phrase, category in config.phrases:
        if phrase in lowered:
            scores[category] = scores.get(category, 0) + 1
    scores.pop(TOOLS_CATEGORY, None)  # tools is chosen by the presence of tools, not by words
    if not scores:
        return None
    return max(sorted(scores), key=lambda name: scores[name])


def parse_category_answer(answer: str, categories: Sequence[str]) -> str | None:
    """The first category name that appears as a word in the classifier's answer (any case).

    Where two names start at the same place ("code" and "code-review") the longer one is the answer.
    """
    found = []
    for name in categories:
        match = re.search(rf"\b{re.escape(name)}\b", answer, re.IGNORECASE)
        if match:
            found.append((match.start(), -len(name), name))
    return min(found)[2] if found else None


Classifier = Callable[[str, Sequence[str]], Awaitable[str | None]]
SemanticMatcher = Callable[[str], Awaitable[str | None]]


def explicit_route(config: RoutingConfig, *, model: str | None, category: str | None) -> Route | None:
    """The route a request names itself (a model id, a category by name or in ``model``, or a model alias
    in ``model``), else None.

    A model or category that does not exist is a 404, a category without a model a 409 (pure: async jobs
    check it when they are submitted).
    Names are looked up in that order; an alias cannot be created with a category's or a model's name.
    """
    named_by = "category"
    if model is not None and model not in ROUTER_ALIASES:
        if model in config.models:
            return Route(category="", chain=(model,), route_mode="model")
        if model in config.categories:
            category, named_by = model, "model"
        elif model in config.aliases:
            return alias_route(config, config.aliases[model])
        else:
            raise GatewayError(
                f"The model {model!r} does not exist.", reason=Reason.NOT_FOUND, code="model_not_found", param="model"
            )
    if category is not None:
        info = config.categories.get(category)
        if info is None:
            raise GatewayError(
                f"The category {category!r} does not exist.",
                reason=Reason.NOT_FOUND,
                code="category_not_found",
                param="category",
            )
        if not info.chain:
            # The client named it: its request cannot be served as the configuration stands, whatever the
            # providers do (a category the router picks by itself and finds empty is a 503 of the gateway).
            raise GatewayError(
                f"The category {category!r} has no model: give it a chain first (admin or the routing API).",
                reason=Reason.CONFLICT,
                code="category_has_no_models",
                param=named_by,
            )
        return Route(category=info.name, chain=info.chain, route_mode="category")
    return None


def alias_route(config: RoutingConfig, alias: AliasInfo) -> Route:
    """Where an alias lands: its category's chain, or its model alone (still behind its breaker)."""
    if alias.category is not None:
        info = config.categories.get(alias.category)
        if info is not None:  # (the alias's foreign key keeps its category: only a reload in between misses it)
            return Route(category=info.name, chain=info.chain, route_mode="alias")
    if alias.model is None or alias.model not in config.models:
        raise GatewayError(
            f"The model alias {alias.name!r} names {alias.target!r}, which is disabled.",
            reason=Reason.NOT_FOUND,
            code="model_not_found",
            param="model",
        )
    return Route(category="", chain=(alias.model,), route_mode="alias")


async def choose_route(
    config: RoutingConfig,
    *,
    text: str,
    model: str | None,
    category: str | None,
    has_tools: bool,
    mode: str,
    default_category: str,
    classify: Classifier,
    similar: SemanticMatcher | None = None,
) -> Route:
    named = explicit_route(config, model=model, category=category)
    if named is not None:
        return named
    if has_tools and TOOLS_CATEGORY in config.categories:
        return _route(config, TOOLS_CATEGORY, "tools")
    chosen: str | None = None
    used = mode
    if mode == "semantic":
        try:
            chosen = await similar(text) if similar is not None else None
        except Exception:  # like the classifier: a failing embedding model falls back to keywords
            logger.warning("semantic routing failed; falling back to keywords", exc_info=True)
            chosen = None
        if chosen is None:
            chosen = keyword_category(config, text)
            used = "keywords"
    if mode in ("keywords", "hybrid"):
        chosen = keyword_category(config, text)
        used = "keywords"
    if chosen is None and mode in ("llm", "hybrid"):
        names = [name for name in config.categories if name != TOOLS_CATEGORY]
        try:
            chosen = await classify(text, names)
            used = "llm"
        except Exception:  # the classifier is a hint: any failure falls back to keywords
            logger.warning("classifier failed; falling back to keywords", exc_info=True)
            chosen = None
        if chosen is None and mode == "llm":
            chosen = keyword_category(config, text)
            used = "keywords"
    if chosen is None or chosen not in config.categories:
        # The default, else the first category that is not reserved for requests with tools.
        fallback = (name for name in config.categories if name != TOOLS_CATEGORY)
        chosen = default_category if default_category in config.categories else next(fallback, None)
        used = "default"
    if chosen is None:
        raise GatewayError("No routing category is configured.", reason=Reason.UNAVAILABLE, code="no_category")
    return _route(config, chosen, used)


def _route(config: RoutingConfig, name: str, mode: str) -> Route:
    return Route(category=name, chain=config.categories[name].chain, route_mode=mode)


def classifier_prompt(text: str, categories: Sequence[str]) -> list[dict[str, str]]:
    return [
        {
            "role": "system",
            "content": "Classify the user's request into exactly one category. Answer with the category name only. "
            f"Categories: {', '.join(categories)}.",
        },
        {"role": "user", "content": text[:2000]},
    ]
