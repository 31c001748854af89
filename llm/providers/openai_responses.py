"""OpenAI's Responses API as a provider's own format: the body a ``/v1/responses`` door received goes upstream
to ``{base_url}/responses`` as it came, and its answer (JSON or typed events) comes back whole
(``GenerationResult.native``, ``StreamEvent.native``), with the text, tool calls and usage read from it for
the gateway's accounting.

Only OpenAI's own API and Azure OpenAI serve it (``NATIVE_KINDS``): most OpenAI-compatible servers (vLLM,
Ollama, OpenRouter, LLMaaS…) have chat completions only, so a request for them is translated instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..types import ChatRequest, NativeEvent, StreamEvent, ToolCall, ToolCallDelta, Usage
from .base import StreamAccumulator

__all__ = [
    "NATIVE_FORMAT",
    "NATIVE_KINDS",
    "ResponseFailed",
    "ResponsesStreamState",
    "decode",
    "native_body",
    "parse_response",
    "responses_body",
]

# The key of a Responses-format body in `ChatRequest.native`.
NATIVE_FORMAT = "openai_responses"
NATIVE_KINDS = frozenset({"openai", "azure"})
RESPONSES_PATH = "/responses"


def native_body(request: ChatRequest) -> Mapping[str, Any] | None:
    return request.native.get(NATIVE_FORMAT) if request.native else None


def responses_body(body: Mapping[str, Any], request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The body as it came, but for this call's own fields: the model (the provider's name for it),
    ``max_output_tokens`` (what the gateway reserved on the key's limits) and ``stream``."""
    return {
        **{k: v for k, v in body.items() if k != "stream"},
        "model": request.model,
        "max_output_tokens": request.max_tokens,
        **({"stream": True} if stream else {}),
    }


def _finish_reason(data: Mapping[str, Any], calls: tuple[ToolCall, ...]) -> str:
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if calls else "stop"


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("input_tokens"), int):
        return None
    prompt, completion = raw["input_tokens"], int(raw.get("output_tokens") or 0)
    return Usage(prompt, completion, prompt + completion)


def parse_response(data: Mapping[str, Any]) -> tuple[str, tuple[ToolCall, ...], str, Usage | None]:
    """A Response object's (text, tool calls, chat finish_reason, usage). Raises on a malformed one."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for item in data["output"]:
        if item["type"] == "message":
            texts.extend(part["text"] for part in item["content"] if part["type"] == "output_text")
        elif item["type"] == "function_call":
            calls.append(ToolCall(id=item["call_id"], name=item["name"], arguments=item["arguments"] or "{}"))
    found = tuple(calls)
    return "".join(texts), found, _finish_reason(data, found), _usage(data.get("usage"))


class ResponseFailed(Exception):
    """The upstream's stream reported a failure: an ``error`` event, or ``response.failed``."""


class ResponsesStreamState:
    """Folds the upstream's typed events into the gateway's stream events: text deltas, tool calls (their
    index by order of appearance), and, once over, the final Response object. Every upstream event is kept
    in ``native`` until a content-bearing one relays the lot."""

    __slots__ = ("calls", "final", "native")

    def __init__(self) -> None:
        self.native: list[NativeEvent] = []
        self.calls: dict[str, int] = {}  # function_call item id -> tool call index
        self.final: Mapping[str, Any] | None = None  # the response of the last event, once it came

    def apply(self, payload: Mapping[str, Any], acc: StreamAccumulator) -> StreamEvent | None:
        """One event (its data); the gateway event to yield, if any. Raises ``ResponseFailed`` for an error
        event or a failed response (the caller maps it), ``KeyError``/``TypeError`` for a malformed one."""
        kind = payload["type"]
        if kind == "error":
            raise ResponseFailed(str(payload.get("message") or "error event in the stream"))
        self.native.append((kind, payload))
        event: StreamEvent | None = None
        if kind == "response.output_text.delta" and payload["delta"]:
            acc.add_text(payload["delta"])
            event = StreamEvent(type="delta", content=payload["delta"])
        elif kind == "response.output_item.added":
            item = payload["item"]
            if item["type"] == "function_call":
                index = self.calls[item["id"]] = len(self.calls)
                acc.add_tool_call(index, item["call_id"], item["name"], item.get("arguments") or "")
                delta = ToolCallDelta(index=index, id=item["call_id"], name=item["name"], arguments="")
                event = StreamEvent(type="delta", tool_calls=(delta,))
            else:
                event = StreamEvent(type="delta")  # the model started answering: commit to it
        elif kind == "response.function_call_arguments.delta" and payload["delta"]:
            index = self.calls[payload["item_id"]]
            acc.add_tool_call(index, None, None, payload["delta"])
            event = StreamEvent(
                type="delta", tool_calls=(ToolCallDelta(index=index, id=None, name=None, arguments=payload["delta"]),)
            )
        elif kind in ("response.completed", "response.incomplete"):
            self.final = payload["response"]
            _, _, acc.finish_reason, acc.usage = parse_response(payload["response"])
            acc.model = payload["response"].get("model")
        elif kind == "response.failed":
            error = payload["response"].get("error") or {}
            raise ResponseFailed(str(error.get("message") or "the upstream's response failed"))
        elif kind == "response.created":
            acc.model = payload["response"].get("model")
        if event is None:
            return None
        pending, self.native = tuple(self.native), []
        return replace(event, native=pending)

    def finish(self, done: StreamEvent) -> StreamEvent:
        """The done event, with the events not relayed yet and the final Response as the result's native."""
        assert done.result is not None
        result = replace(done.result, native=self.final)
        return replace(done, result=result, native=tuple(self.native))


def decode(raw: bytes | str) -> Mapping[str, Any]:
    data = json.loads(raw)
    if not isinstance(data, Mapping):
        raise TypeError("not a JSON object")
    return data
