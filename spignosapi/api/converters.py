"""URL converters for the platform's ids, so a path that cannot name one is a 404 from the resolver itself.

Characters that no path of any route may hold (NUL, control characters, what an invalid UTF-8 escape
decodes to) are refused earlier, for every route, by ``middleware.PathGuardMiddleware``.
"""

from __future__ import annotations


class ModelIdConverter:
    """A model id, ``<provider>/<name>`` (contract section 1): the provider a slug of at most 50 characters
    (``Provider.name``), the name at most 200 characters of anything, slashes included
    (``LLMModel.name``: ``openrouter/meta-llama/llama-3-8b``)."""

    regex = r"[-a-zA-Z0-9_]{1,50}/.{1,200}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
