"""Provider implementations and the factory that picks one for a `ProviderConfig`."""

from __future__ import annotations

import time

from ..types import ProviderConfig
from .anthropic import AnthropicProvider
from .base import Clock, Provider
from .openai_compat import OpenAICompatProvider

__all__ = ["AnthropicProvider", "OpenAICompatProvider", "Provider", "create_provider"]


def create_provider(config: ProviderConfig, *, clock: Clock = time.monotonic) -> Provider:
    """The provider for `config.kind`: Anthropic's own API, or the OpenAI wire format for every other kind."""
    if config.kind == "anthropic":
        return AnthropicProvider(config, clock=clock)
    return OpenAICompatProvider(config, clock=clock)
