"""The in-process embedding model (provider kind ``local``): the real all-MiniLM-L6-v2, offline."""

from __future__ import annotations

import asyncio
import math

import pytest

from llm import BadRequestError, LLMHandler, NotFoundError, ProviderConfig

LOCAL = ProviderConfig(name="local", kind="local", base_url="")


@pytest.fixture(scope="module")
def handler() -> LLMHandler:
    return LLMHandler([LOCAL])


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_it_embeds_offline_into_unit_vectors_that_capture_meaning(handler: LLMHandler) -> None:
    result = handler.embed(
        "local/all-minilm-l6-v2",
        ["The cat sits on the mat.", "A kitten is resting on a rug.", "Quarterly revenue grew by 4 percent."],
    )
    cat, kitten, revenue = result.vectors
    assert (len(result.vectors), len(cat), result.model) == (3, 384, "all-minilm-l6-v2")
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in result.vectors)
    assert cosine(cat, kitten) > 0.5 > cosine(cat, revenue)
    # Same text, same vector: the model is deterministic on the CPU.
    again = handler.embed("local/all-minilm-l6-v2", ["The cat sits on the mat."]).vectors[0]
    assert max(abs(x - y) for x, y in zip(cat, again, strict=True)) < 1e-6


def test_usage_counts_the_models_own_tokens(handler: LLMHandler) -> None:
    # BERT word pieces with [CLS] and [SEP]: "hello world" is [CLS] hello world [SEP].
    result = handler.embed("local/all-minilm-l6-v2", ["hello world", "hello"])
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (7, 0, 7)


def test_the_async_call_gives_the_same_vectors(handler: LLMHandler) -> None:
    sync = handler.embed("local/all-minilm-l6-v2", ["offline embeddings"]).vectors[0]
    result = asyncio.run(handler.aembed("local/all-minilm-l6-v2", ["offline embeddings"]))
    assert max(abs(x - y) for x, y in zip(sync, result.vectors[0], strict=True)) < 1e-6


def test_an_unknown_local_model_and_chat_are_refused(handler: LLMHandler) -> None:
    with pytest.raises(NotFoundError) as unknown:
        handler.embed("local/nomic-embed", ["x"])
    assert (unknown.value.retryable, unknown.value.provider) == (False, "local")
    with pytest.raises(BadRequestError) as chat:
        handler.generate("local/all-minilm-l6-v2", prompt="hello")
    assert "embeddings only" in str(chat.value) and chat.value.retryable is False


def test_only_local_providers_may_leave_the_base_url_empty() -> None:
    assert LOCAL.base_url == ""
    with pytest.raises(ValueError, match="must be an http"):
        ProviderConfig(name="openai", kind="openai", base_url="")
    with pytest.raises(ValueError, match="must be an http"):
        ProviderConfig(name="local2", kind="local", base_url="file:///models")
