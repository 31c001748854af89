"""Provider implementations and the registry of provider kinds.

Each provider module declares the kinds it serves in a module-level ``KINDS`` mapping (kind -> provider
class). The registry below collects them; ``PROVIDER_KINDS``, ``ProviderConfig``'s validation and
``create_provider`` are derived from it. Adding a provider kind is one new module (or one more entry in an
existing module's ``KINDS``) and, for a new module, one line in ``_DECLARATIONS``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType

from ..types import ProviderConfig
from . import anthropic, local, openai_compat
from .anthropic import AnthropicProvider
from .base import Clock, Provider
from .local import LocalProvider
from .openai_compat import OpenAICompatProvider

__all__ = [
    "PROVIDERS_BY_KIND",
    "PROVIDER_KINDS",
    "AnthropicProvider",
    "LocalProvider",
    "OpenAICompatProvider",
    "Provider",
    "collect_kinds",
    "create_provider",
]


def collect_kinds(*declarations: Mapping[str, type[Provider]]) -> Mapping[str, type[Provider]]:
    """One read-only registry from the modules' ``KINDS``; a kind declared twice is a programming error."""
    registry: dict[str, type[Provider]] = {}
    for kinds in declarations:
        for kind, provider in kinds.items():
            if kind in registry:
                raise ValueError(
                    f"provider kind {kind!r} is declared by both {registry[kind].__name__} and {provider.__name__}"
                )
            registry[kind] = provider
    return MappingProxyType(registry)


_DECLARATIONS = (openai_compat.KINDS, anthropic.KINDS, local.KINDS)

PROVIDERS_BY_KIND: Mapping[str, type[Provider]] = collect_kinds(*_DECLARATIONS)
PROVIDER_KINDS: frozenset[str] = frozenset(PROVIDERS_BY_KIND)


def create_provider(config: ProviderConfig, *, clock: Clock = time.monotonic) -> Provider:
    """The provider serving `config.kind` (`ProviderConfig` has already refused unknown kinds)."""
    return PROVIDERS_BY_KIND[config.kind](config, clock=clock)
