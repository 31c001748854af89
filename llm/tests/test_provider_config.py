"""ProviderConfig: validation, and secrets never shown by repr()."""

from __future__ import annotations

import pytest

from llm import PROVIDER_KINDS, LLMHandler, ProviderConfig

SECRET = "sk-test-0123456789abcdef"


def test_it_accepts_every_documented_kind() -> None:
    kinds = {"openai", "azure", "anthropic", "ollama", "openrouter", "llmaas", "openai_compatible", "local"}
    assert kinds == PROVIDER_KINDS
    for kind in sorted(kinds):
        config = ProviderConfig(name=kind, kind=kind, base_url="https://api.example.com", api_version="2024-10-21")
        assert config.kind == kind


def test_it_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown provider kind 'bedrock'"):
        ProviderConfig(name="x", kind="bedrock", base_url="https://api.example.com")


@pytest.mark.parametrize(
    "base_url",
    ["ftp://api.example.com", "api.example.com/v1", "localhost:8000", "", "file:///etc/passwd", "http://"],
)
def test_it_rejects_a_base_url_that_is_not_http(base_url: str) -> None:
    with pytest.raises(ValueError, match="must be an http\\(s\\) URL"):
        ProviderConfig(name="x", kind="openai", base_url=base_url)


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:11434/v1", "https://api.openai.com/v1", "HTTPS://Example.com"])
def test_it_accepts_http_and_https_urls(base_url: str) -> None:
    assert ProviderConfig(name="x", kind="openai", base_url=base_url).base_url == base_url


def test_repr_hides_the_api_key() -> None:
    config = ProviderConfig(name="openai", kind="openai", base_url="https://api.openai.com/v1", api_key=SECRET)

    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in f"{config}"
    assert "api_key=***" in repr(config)
    assert config.api_key == SECRET


def test_repr_says_when_there_is_no_api_key() -> None:
    config = ProviderConfig(name="local", kind="ollama", base_url="http://127.0.0.1:11434/v1")
    assert "api_key=None" in repr(config)


def test_repr_shows_header_names_but_not_their_values() -> None:
    config = ProviderConfig(
        name="gw",
        kind="openai_compatible",
        base_url="https://gw.example.com/v1",
        headers={"Authorization": f"Bearer {SECRET}", "X-Title": "spignos"},
    )
    assert SECRET not in repr(config)
    assert "spignos" not in repr(config)
    assert "['Authorization', 'X-Title']" in repr(config)


def test_repr_masks_credentials_in_the_base_url() -> None:
    config = ProviderConfig(name="gw", kind="llmaas", base_url=f"https://user:{SECRET}@gw.example.com:8443/v1")
    assert SECRET not in repr(config)
    assert config.safe_base_url == "https://***@gw.example.com:8443/v1"


def test_it_rejects_a_name_that_could_not_prefix_a_model_id() -> None:
    with pytest.raises(ValueError, match="contain no '/'"):
        ProviderConfig(name="open/ai", kind="openai", base_url="https://api.openai.com/v1")
    with pytest.raises(ValueError, match="non-empty"):
        ProviderConfig(name="", kind="openai", base_url="https://api.openai.com/v1")


def test_azure_needs_an_api_version() -> None:
    with pytest.raises(ValueError, match="api_version"):
        ProviderConfig(name="az", kind="azure", base_url="https://x.openai.azure.com")


@pytest.mark.parametrize(
    "field, value",
    [("timeout_s", 0.0), ("connect_timeout_s", -1.0), ("first_token_timeout_s", 0.0), ("max_connections", 0)],
)
def test_it_rejects_non_positive_limits(field: str, value: float) -> None:
    with pytest.raises(ValueError):
        ProviderConfig(name="x", kind="openai", base_url="https://api.example.com", **{field: value})  # type: ignore[arg-type]


def test_headers_are_a_read_only_copy() -> None:
    headers = {"HTTP-Referer": "https://spignos.example"}
    config = ProviderConfig(name="or", kind="openrouter", base_url="https://openrouter.ai/api/v1", headers=headers)
    headers["HTTP-Referer"] = "changed"

    assert config.headers == {"HTTP-Referer": "https://spignos.example"}
    with pytest.raises(TypeError):
        config.headers["X-Title"] = "x"  # type: ignore[index]


def test_defaults_match_the_spec() -> None:
    config = ProviderConfig(name="x", kind="openai", base_url="https://api.example.com")
    assert (config.api_key, config.timeout_s, config.connect_timeout_s, config.first_token_timeout_s) == (
        None,
        300.0,
        10.0,
        None,
    )
    assert (dict(config.headers), config.api_version, config.max_connections) == ({}, None, 100)


def test_handler_rejects_a_provider_configured_twice() -> None:
    config = ProviderConfig(name="x", kind="openai", base_url="https://api.example.com")
    with pytest.raises(ValueError, match="configured twice"):
        LLMHandler([config, config])


def test_handler_rejects_a_mapping_key_that_is_not_the_provider_name() -> None:
    config = ProviderConfig(name="x", kind="openai", base_url="https://api.example.com")
    with pytest.raises(ValueError, match="differs"):
        LLMHandler({"y": config})


def test_handler_repr_lists_provider_names_only() -> None:
    config = ProviderConfig(name="x", kind="openai", base_url="https://api.example.com", api_key=SECRET)
    handler = LLMHandler([config])
    assert repr(handler) == "LLMHandler(providers=['x'])"
    assert SECRET not in repr(handler.provider("x"))
