"""URL converters for the platform's ids: a path holding an id that no row can have (a character its field
refuses, more characters than its column holds) is a 404 from the resolver, for every method, and never
reaches a view or a query (a collection name over 100 characters was a 500: the column refused it).

Each converter's length comes from the model field it names, so the two cannot drift apart. Characters that
no path of any route may hold (NUL, control characters, what an invalid UTF-8 escape decodes to) are refused
earlier, for every route, by ``PathGuardMiddleware`` (``spignosapi.api.middleware``).
"""

from __future__ import annotations

from django.db.models import Field, Model
from django.urls import register_converter
from django.urls.converters import StringConverter

SLUG = "[-a-zA-Z0-9_]"  # what Django's SlugField (and its slug converter) accept


def _converter(name: str, regex: str) -> type[StringConverter]:
    return type(name, (StringConverter,), {"regex": regex})


def register() -> None:
    """Register ``<key_prefix:…>``, ``<team:…>``,
    ``<model_id:…>``, ``<model_name:…>``, ``<alias:…>``, ``<category:…>``, ``<collection:…>``,
    ``<document:…>``, ``<session:…>`` and ``<response_id:…>``.

    Called once, from the platform's ``AppConfig.ready()``: after every model is loaded, before any URL conf
    (HTTP or WebSocket) is imported.
    """
    from accounts.models import KEY_PREFIX, PREFIX_CHARS, PREFIX_MAX_LENGTH, ApiKey, Team
    from jobs.models import Job
    from rag.models import Collection, Document
    from routing.models import ALIAS_NAME_CHARS, Category, LLMModel, ModelAlias, Provider, StoredResponse

    def max_length(model: type[Model], field: str) -> int:
        column = model._meta.get_field(field)
        assert isinstance(column, Field) and isinstance(column.max_length, int)
        return column.max_length

    # ``<provider>/<name>`` (contract section 1); a name may hold slashes (openrouter/meta-llama/llama-3-8b).
    provider, model = max_length(Provider, "name"), max_length(LLMModel, "name")
    register_converter(_converter("ModelIdConverter", f"{SLUG}{{1,{provider}}}/.{{1,{model}}}"), "model_id")
    # What a client names as ``model``: the router or a category (one slug), a model id, or a model alias
    # (``claude-3.5-sonnet``, ``llama3.1:8b``, ``anthropic/claude-sonnet-4.5``: ``routing.models.ALIAS_NAME``).
    alias = max_length(ModelAlias, "name")
    first = max(provider, max_length(Category, "name"), alias)
    model_name = f"[{ALIAS_NAME_CHARS}]{{1,{first}}}(?:/.{{1,{max(model, alias)}}})?"
    register_converter(_converter("ModelNameConverter", model_name), "model_name")
    # An alias's own name; its exact form is the model's validator's (a name of another form has no row).
    register_converter(_converter("AliasConverter", f"[{ALIAS_NAME_CHARS}/]{{1,{alias}}}"), "alias")
    register_converter(_converter("CategoryConverter", f"{SLUG}{{1,{max_length(Category, 'name')}}}"), "category")
    register_converter(_converter("CollectionConverter", f"{SLUG}{{1,{max_length(Collection, 'name')}}}"), "collection")
    # A document's id is the client's own (any characters, slashes too), bounded by its column.
    register_converter(_converter("DocumentConverter", f".{{1,{max_length(Document, 'external_id')}}}"), "document")
    register_converter(_converter("SessionConverter", f"{SLUG}{{1,{max_length(Job, 'session_id')}}}"), "session")
    # A key's prefix (``spg-`` and up to 12 characters) and a team's name.
    rest = max_length(ApiKey, "prefix") - len(KEY_PREFIX)
    assert rest == PREFIX_MAX_LENGTH - len(KEY_PREFIX)
    register_converter(_converter("KeyPrefixConverter", f"{KEY_PREFIX}{PREFIX_CHARS}{{1,{rest}}}"), "key_prefix")
    register_converter(_converter("TeamConverter", f"{SLUG}{{1,{max_length(Team, 'name')}}}"), "team")
    # A Responses API id (``resp_`` and hex, as the door makes them; any slug, so an unknown one is the door's 404).
    register_converter(
        _converter("ResponseIdConverter", f"{SLUG}{{1,{max_length(StoredResponse, 'id')}}}"), "response_id"
    )
