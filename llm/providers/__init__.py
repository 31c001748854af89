"""Provider implementations and the factory that picks one for a `ProviderConfig`."""

from __future__ import annotations

import time

from ..types import ProviderConfig
from .anthropic import AnthropicProvider
from .base import Clock, Provider
from .local import LocalProvider
from .openai_compat import OpenAICompatProvider

__all__ = ["AnthropicProvider", "LocalProvider", "OpenAICompatProvider", "Provider", "create_provider"]


def create_provider(config: ProviderConfig, *, clock: Clock = time.monotonic) -> Provider:
    """The provider for `config.kind`: Anthropic's API, in-process models, or the OpenAI wire format."""
    if config.kind == "anthropic":
        return AnthropicProvider(config, clock=clock)
    if config.kind == "local":
        return LocalProvider(config, clock=clock)
    return OpenAICompatProvider(config, clock=clock)
