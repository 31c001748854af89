"""The registry of provider kinds: collected from each provider module's `KINDS`, the factory derived from it."""

from __future__ import annotations

import pytest

from llm import PROVIDER_KINDS, ProviderConfig
from llm.providers import (
    PROVIDERS_BY_KIND,
    AnthropicProvider,
    LocalProvider,
    OpenAICompatProvider,
    anthropic,
    collect_kinds,
    create_provider,
    local,
    openai_compat,
)


def test_every_kind_comes_from_the_module_that_serves_it() -> None:
    assert dict(PROVIDERS_BY_KIND) == {
        "openai": OpenAICompatProvider,
        "azure": OpenAICompatProvider,
        "ollama": OpenAICompatProvider,
        "openrouter": OpenAICompatProvider,
        "llmaas": OpenAICompatProvider,
        "openai_compatible": OpenAICompatProvider,
        "anthropic": AnthropicProvider,
        "local": LocalProvider,
    }
    assert dict(PROVIDERS_BY_KIND) == {**openai_compat.KINDS, **anthropic.KINDS, **local.KINDS}
    assert frozenset(PROVIDERS_BY_KIND) == PROVIDER_KINDS


@pytest.mark.parametrize("kind", sorted(PROVIDER_KINDS))
def test_create_provider_builds_the_class_registered_for_the_kind(kind: str) -> None:
    config = ProviderConfig(name=kind, kind=kind, base_url="https://api.example.com/v1", api_version="2024-10-21")

    provider = create_provider(config, clock=lambda: 0.0)

    assert type(provider) is PROVIDERS_BY_KIND[kind]
    assert (provider.name, provider.config) == (kind, config)
    provider.close()


def test_it_refuses_a_kind_declared_by_two_modules() -> None:
    with pytest.raises(ValueError, match="provider kind 'anthropic' is declared by both AnthropicProvider and Local"):
        collect_kinds({"anthropic": AnthropicProvider}, {"local": LocalProvider, "anthropic": LocalProvider})


def test_the_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        PROVIDERS_BY_KIND["bedrock"] = OpenAICompatProvider  # type: ignore[index]


def test_only_in_process_kinds_go_without_a_base_url() -> None:
    assert ProviderConfig(name="emb", kind="local", base_url="").base_url == ""
    with pytest.raises(ValueError, match="must be an http\\(s\\) URL"):
        ProviderConfig(name="x", kind="anthropic", base_url="")
