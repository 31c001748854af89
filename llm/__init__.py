"""Framework-free access to LLM providers: one handler, typed results, one error hierarchy.

    handler = LLMHandler([ProviderConfig(name="openai", kind="openai", base_url=..., api_key=...)])
    result = handler.generate("openai/gpt-4o-mini", prompt="Hello")

No Django (nor any settings) is imported here: configuration is passed in.
"""

from .errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    InvalidResponseError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    NotFoundError,
    ProviderNotConfiguredError,
    RateLimitedError,
    UnsupportedParameterError,
    UpstreamServerError,
)
from .handler import LLMHandler, split_model_id
from .providers import PROVIDER_KINDS, Provider
from .retry import RetryPolicy
from .tokens import count_message_tokens, count_tokens
from .types import (
    ChatRequest,
    Choice,
    EmbeddingResult,
    GenerationParams,
    GenerationResult,
    ProviderConfig,
    StreamEvent,
    Timings,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "PROVIDER_KINDS",
    "AuthenticationError",
    "BadRequestError",
    "ChatRequest",
    "Choice",
    "ContentFilteredError",
    "EmbeddingResult",
    "GenerationParams",
    "GenerationResult",
    "InvalidResponseError",
    "LLMConnectionError",
    "LLMError",
    "LLMHandler",
    "LLMTimeoutError",
    "NotFoundError",
    "Provider",
    "ProviderConfig",
    "ProviderNotConfiguredError",
    "RateLimitedError",
    "RetryPolicy",
    "StreamEvent",
    "Timings",
    "ToolCall",
    "ToolCallDelta",
    "UnsupportedParameterError",
    "UpstreamServerError",
    "Usage",
    "count_message_tokens",
    "count_tokens",
    "split_model_id",
]
