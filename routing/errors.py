"""The gateway's error: a ``ServiceError`` raised by limits, routing, the chain walk and the embedding call.

Front doors let it propagate (the HTTP layer renders it); workers read ``retryable`` and ``retry_after``.
"""

from __future__ import annotations

from spignosapi.errors import Reason, ServiceError

__all__ = ["GatewayError", "Reason"]


class GatewayError(ServiceError):
    """A call the gateway could not serve (see ``ServiceError`` for the fields)."""
