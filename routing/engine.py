"""The process's one ``LLMHandler``, rebuilt only when the providers' configuration changes."""

from __future__ import annotations

import threading

from llm import LLMHandler, ProviderConfig, RetryPolicy

# The router does its own fallback across models, so each call to a model is a single attempt.
SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)

_lock = threading.Lock()
_handler: LLMHandler | None = None
_configs: dict[str, ProviderConfig] | None = None


def handler_for(providers: dict[str, ProviderConfig]) -> LLMHandler:
    global _handler, _configs
    if _handler is not None and _configs is providers:
        return _handler
    with _lock:
        if _handler is None or _configs != providers:
            _handler = LLMHandler(providers, retry=SINGLE_ATTEMPT)
        _configs = providers
        return _handler
