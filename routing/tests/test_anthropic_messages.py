"""The Anthropic Messages translation (``routing.anthropic_messages``), function by function: what the door's
SDK tests (test_anthropic_api.py) cannot see from outside, such as the parameters kept in ``Call.params``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm import GenerationResult, StreamEvent, Timings, ToolCall, ToolCallDelta, Usage
from routing.anthropic_messages import StreamEncoder, message_body, messages_request
from spignosapi.api.errors import InvalidRequest

BASE: dict[str, Any] = {"model": "router", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def test_it_translates_what_has_no_canonical_field_to_chat_params_and_keeps_top_k_apart() -> None:
    request = messages_request(
        {
            **BASE,
            "top_k": 5,
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "max"},
        }
    )
    assert (request.tool_choice, request.top_k) == ("required", 5)
    # Chat-completions names only: an OpenAI-compatible provider sends params as they are.
    assert request.params == {
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}}},
        "reasoning_effort": "high",
    }


def test_a_user_turn_gives_its_tool_results_first_then_its_text_and_images() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}}
    request = messages_request(
        {
            **BASE,
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"q": "é"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Here:"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "no"}, image],
                            "is_error": True,
                        },
                    ],
                },
            ],
        }
    )
    assert request.messages == [
        {  # the thinking block is the model's own: no other backend reads it back
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"q":"é"}'}}],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here:"},
                {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lG"}},
            ],
        },
    ]


DATA = "JVBERi0="


def test_a_document_becomes_a_file_part_or_text() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": DATA}
    content = [
        {"type": "document", "source": pdf, "title": "report.pdf", "cache_control": {"type": "ephemeral"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
        {"type": "text", "text": "Summarise."},
    ]
    request = messages_request({**BASE, "messages": [{"role": "user", "content": content}]})
    assert request.messages == [
        {
            "role": "user",
            "content": [
                {
                    "type": "file",
                    "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
                },
                {"type": "text", "text": "plain words"},
                {"type": "text", "text": "Summarise."},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_result"}]}]}, "messages.0.content.0.type: "),
        ({"output_config": {"format": {"type": "xml"}}}, "output_config.format: "),
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens: "),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0: Only custom tools"),
        ({"top_k": -1}, "top_k: "),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "x"}}]}]},
            "messages.0.content.0.source: Only base64 PDF and plain text documents",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "file:///x"}}]}
                ]
            },
            "messages.0.content.0.source.url: ",
        ),
    ],
)
def test_it_names_the_field_it_refuses(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        messages_request({**BASE, **extra})
    assert str(caught.value.detail).startswith(message)


def result(text: str = "", calls: tuple[ToolCall, ...] = (), finish: str | None = "stop") -> GenerationResult:
    return GenerationResult(text, finish, calls, Usage(7, 3, 10), Timings(None, 1.0, None), "m", "demo")


def test_a_result_becomes_text_and_tool_use_blocks() -> None:
    call = ToolCall(id="call_1", name="f", arguments='{"a": 1}')
    body = message_body("msg_1", "demo/m", result("Sure.", (call,), "tool_calls"))
    assert body == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "demo/m",
        "content": [
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 7,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 3,
        },
    }


def test_the_stream_opens_one_block_at_a_time() -> None:
    encoder = StreamEncoder("msg_1", "demo/m", 7)
    out = encoder.start()
    out += encoder.event(StreamEvent(type="delta", content="Hi"))
    out += encoder.event(StreamEvent(type="delta", tool_calls=(ToolCallDelta(0, "call_1", "f", ""),)))
    out += encoder.event(StreamEvent(type="delta", tool_calls=(ToolCallDelta(0, None, None, '{"a":'),)))
    out += encoder.event(StreamEvent(type="delta", tool_calls=(ToolCallDelta(0, None, None, "1}"),)))
    out += encoder.finish(result("Hi", (ToolCall("call_1", "f", '{"a":1}'),), "tool_calls"))
    events = [(chunk.split("\n")[0][7:], json.loads(chunk.split("\n")[1][6:])) for chunk in out.split("\n\n") if chunk]
    assert [(name, data.get("index")) for name, data in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("ping", None),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    assert events[9][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 7, "output_tokens": 3},
    }
