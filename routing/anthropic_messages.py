"""The Anthropic Messages format, translated to and from the gateway's canonical (OpenAI-chat-shaped) call.

``messages_request`` checks an Anthropic ``/v1/messages`` body and translates it: ``system`` becomes a system
message, ``tool_use`` blocks assistant ``tool_calls``, ``tool_result`` blocks ``role: tool`` messages, images
``image_url`` parts (data URLs), ``stop_sequences`` ``stop``, ``tool_choice`` any ``"required"``. Back:
``message_body`` is a ``Message`` of a gateway result, and ``StreamEncoder`` turns the gateway's stream
events into Anthropic's event sequence (``message_start``, each block's ``content_block_start`` /
``content_block_delta`` / ``content_block_stop`` with one ``ping`` after the first start, ``message_delta``,
``message_stop``).

Bad input is an ``InvalidRequest`` naming the field the way Anthropic does (``messages.0.content.1.type``):
the door renders it in Anthropic's error envelope.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm import GenerationResult, StreamEvent, count_message_tokens, count_tokens
from spignosapi.api.asyncviews import dumps
from spignosapi.api.errors import InvalidRequest

__all__ = [
    "MessagesRequest",
    "StreamEncoder",
    "count_request_tokens",
    "message_body",
    "messages_request",
    "stop_reason",
    "usage_body",
]

MAX_MODEL_LENGTH = 260
MAX_TOKENS_LIMIT = 1_000_000
MAX_MESSAGES = 10_000
MAX_TOOLS = 128

# The OpenAI finish_reason the gateway reports → Anthropic's stop_reason.
_STOP_REASONS: Mapping[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_TOOL_CHOICES: Mapping[str, str] = {"auto": "auto", "any": "required", "none": "none"}
_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Blocks of a previous assistant turn that no other backend can take back: the model's own reasoning.
_REASONING_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def _fail(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}" if param else message, code="invalid_request_error", param=param)


@dataclass
class MessagesRequest:
    """An Anthropic body, checked, with its canonical messages and tools."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user_id: str = ""
    stream: bool = False
    top_k: int | None = None  # no chat-completions field has it: it rides apart from the chat params
    # The chat-completions fields the body's other fields translate to (response_format, …).
    params: dict[str, Any] = field(default_factory=dict)


# --- the request --------------------------------------------------------------------------------------------


def messages_request(body: Mapping[str, Any], *, require_max_tokens: bool = True) -> MessagesRequest:
    """``body`` checked and translated; ``InvalidRequest`` for the first problem found."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _fail("Field required (a non-empty string)." if model is None else "Input should be a string.", "model")
    if len(model) > MAX_MODEL_LENGTH:
        raise _fail(f"Ensure this value has at most {MAX_MODEL_LENGTH} characters.", "model")
    max_tokens = _max_tokens(body.get("max_tokens"), required=require_max_tokens)
    messages = _system(body.get("system"))
    messages.extend(_messages(body.get("messages")))
    tools = _tools(body.get("tools"))
    tool_choice, parallel = _tool_choice(body.get("tool_choice"), has_tools=bool(tools))
    request = MessagesRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=_number(body.get("temperature"), "temperature", 0.0, 1.0, default=1.0),
        top_p=_number(body.get("top_p"), "top_p", 0.0, 1.0, default=1.0),
        stop=_stop_sequences(body.get("stop_sequences")),
        tools=tools,
        tool_choice=tool_choice,
        user_id=_user_id(body.get("metadata")),
        stream=_boolean(body.get("stream"), "stream"),
    )
    top_k = body.get("top_k")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise _fail("Input should be a non-negative integer.", "top_k")
        request.top_k = top_k
    if parallel is False:
        request.params["parallel_tool_calls"] = False
    request.params.update(_output_config(body.get("output_config")))
    _check_thinking(body.get("thinking"))
    return request


# Anthropic's output effort → OpenAI's reasoning_effort (whose top is "high").
_EFFORTS: Mapping[str, str] = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def _output_config(config: Any) -> dict[str, Any]:
    """The chat parameters of ``output_config``: its JSON schema format as ``response_format`` (structured
    output), its effort as ``reasoning_effort``."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise _fail("Input should be an object.", "output_config")
    params: dict[str, Any] = {}
    output_format = config.get("format")
    if output_format is not None:
        schema = output_format.get("schema") if isinstance(output_format, dict) else None
        if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
            raise _fail("Input should be an object of type 'json_schema'.", "output_config.format")
        if not isinstance(schema, dict):
            raise _fail("Field required (a JSON schema object).", "output_config.format.schema")
        params["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    effort = config.get("effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise _fail(f"Input should be one of {', '.join(_EFFORTS)}.", "output_config.effort")
        params["reasoning_effort"] = _EFFORTS[effort]
    return params


def _max_tokens(value: Any, *, required: bool) -> int | None:
    if value is None:
        if required:
            raise _fail("Field required.", "max_tokens")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("Input should be a valid integer.", "max_tokens")
    if not 1 <= value <= MAX_TOKENS_LIMIT:
        raise _fail(f"Input should be between 1 and {MAX_TOKENS_LIMIT}.", "max_tokens")
    return value


def _number(value: Any, name: str, low: float, high: float, *, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail("Input should be a valid number.", name)
    if not low <= value <= high:
        raise _fail(f"Input should be between {low:g} and {high:g}.", name)
    return float(value)


def _boolean(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail("Input should be a valid boolean.", name)
    return value


def _stop_sequences(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise _fail("Input should be a list of non-empty strings.", "stop_sequences")
    return list(value) or None


def _user_id(metadata: Any) -> str:
    if metadata is None:
        return ""
    if not isinstance(metadata, dict):
        raise _fail("Input should be an object.", "metadata")
    user_id = metadata.get("user_id")
    if user_id is None:
        return ""
    if not isinstance(user_id, str) or len(user_id) > 256:
        raise _fail("Input should be a string of at most 256 characters.", "metadata.user_id")
    return user_id


def _check_thinking(thinking: Any) -> None:
    """``thinking`` is the model's budget for reasoning: a backend that does not reason answers without it."""
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        raise _fail("Input should be an object of type 'enabled', 'disabled' or 'adaptive'.", "thinking")
    budget = thinking.get("budget_tokens")
    if kind == "enabled" and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024):
        raise _fail("Input should be an integer of at least 1024.", "thinking.budget_tokens")


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise _fail("Input should be a string or a list of text blocks.", "system")
    texts = []
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise _fail("Input should be a text block.", f"system.{index}")
        texts.append(block["text"])
    return [{"role": "system", "content": "\n".join(texts)}] if texts else []


def _messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise _fail("Field required.", "messages")
    if not isinstance(messages, list) or not messages:
        raise _fail("Input should be a non-empty list of messages.", "messages")
    if len(messages) > MAX_MESSAGES:
        raise _fail(f"At most {MAX_MESSAGES} messages.", "messages")
    translated: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise _fail("Input should be an object.", where)
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        elif not isinstance(content, list):
            raise _fail("Input should be a string or a list of content blocks.", f"{where}.content")
        if role == "user":
            translated.extend(_user_message(content, where))
        elif role == "assistant":
            translated.append(_assistant_message(content, where))
        else:
            raise _fail("Input should be 'user' or 'assistant'.", f"{where}.role")
    return translated


def _block_type(block: Any, where: str) -> str:
    if not isinstance(block, dict):
        raise _fail("Input should be a content block (an object).", where)
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _fail("Field required.", f"{where}.type")
    return kind


def _text(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _fail("Input should be a string.", f"{where}.text")
    return text


def _user_message(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """A user turn: its tool results as ``tool`` messages first (they answer the previous turn's calls),
    then its text and images as one user message."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        at = f"{where}.content.{index}"
        kind = _block_type(block, at)
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "document":
            parts.append(_document_part(block, at))
        elif kind == "tool_result":
            tool_message, images = _tool_result(block, at)
            results.append(tool_message)
            parts.extend(images)
        else:
            raise _fail(f"Unsupported content block type {kind!r} in a user message.", f"{at}.type")
    messages = results
    if parts:
        single_text = len(parts) == 1 and parts[0]["type"] == "text"
        messages.append({"role": "user", "content": parts[0]["text"] if single_text else parts})
    elif not results:
        messages.append({"role": "user", "content": ""})
    return messages


def _image_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _fail("Field required.", f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if media_type not in _IMAGE_MEDIA_TYPES:
            allowed = ", ".join(sorted(_IMAGE_MEDIA_TYPES))
            raise _fail(f"Input should be one of {allowed}.", f"{where}.source.media_type")
        if not isinstance(data, str) or not data:
            raise _fail("Input should be a base64 string.", f"{where}.source.data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        link = source.get("url")
        if not isinstance(link, str) or not link.startswith(("http://", "https://")):
            raise _fail("Input should be an http(s) URL.", f"{where}.source.url")
        url = link
    else:
        raise _fail("Input should be 'base64' or 'url'.", f"{where}.source.type")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A document as a chat content part: a PDF as a ``file`` part (a data URL), plain text as text."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise _fail("Field required.", f"{where}.source")
    kind, data = source.get("type"), source.get("data")
    if kind == "base64" and source.get("media_type") == "application/pdf" and isinstance(data, str) and data:
        title = block.get("title")
        filename = title if isinstance(title, str) and title else "document.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": f"data:application/pdf;base64,{data}"}}
    if kind == "text" and isinstance(data, str):
        return {"type": "text", "text": data}
    raise _fail("Only base64 PDF and plain text documents are supported.", f"{where}.source")


def _tool_result(block: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``tool`` message of a ``tool_result`` block, and the images it returned (a tool message carries
    text only: they follow in the user message)."""
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise _fail("Field required.", f"{where}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for index, part in enumerate(content):
            at = f"{where}.content.{index}"
            kind = _block_type(part, at)
            if kind == "text":
                texts.append(_text(part, at))
            elif kind == "image":
                images.append(_image_part(part, at))
            else:
                raise _fail(f"Unsupported content block type {kind!r} in a tool result.", f"{at}.type")
    elif content is not None:
        raise _fail("Input should be a string or a list of content blocks.", f"{where}.content")
    if block.get("is_error") not in (None, True, False):
        raise _fail("Input should be a valid boolean.", f"{where}.is_error")
    text = "\n".join(texts)
    if block.get("is_error"):
        # A chat tool message has no error flag: say it in the text, as the model must know.
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, images


def _assistant_message(blocks: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        at = f"{where}.content.{index}"
        kind = _block_type(block, at)
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind in _REASONING_BLOCKS:
            continue  # the model's own reasoning, which only an Anthropic model reads back
        else:
            raise _fail(f"Unsupported content block type {kind!r} in an assistant message.", f"{at}.type")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise _fail("Field required.", f"{where}.id")
    if not isinstance(name, str) or not name:
        raise _fail("Field required.", f"{where}.name")
    if not isinstance(arguments, dict):
        raise _fail("Input should be an object.", f"{where}.input")
    encoded = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}}


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise _fail("Input should be a list of tools.", "tools")
    if len(tools) > MAX_TOOLS:
        raise _fail(f"At most {MAX_TOOLS} tools.", "tools")
    translated = []
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if not isinstance(tool, dict):
            raise _fail("Input should be an object.", where)
        if tool.get("type") not in (None, "custom"):
            raise _fail(f"Only custom tools (name, input_schema) are supported, not {tool.get('type')!r}.", where)
        name, schema, description = tool.get("name"), tool.get("input_schema"), tool.get("description")
        if not isinstance(name, str) or not name:
            raise _fail("Field required.", f"{where}.name")
        if not isinstance(schema, dict):
            raise _fail("Field required (a JSON schema object).", f"{where}.input_schema")
        if description is not None and not isinstance(description, str):
            raise _fail("Input should be a string.", f"{where}.description")
        function: dict[str, Any] = {"name": name, **({"description": description} if description else {})}
        function["parameters"] = schema
        translated.append({"type": "function", "function": function})
    return translated or None


def _tool_choice(choice: Any, *, has_tools: bool) -> tuple[str | dict[str, Any] | None, bool | None]:
    """(the chat tool_choice, whether parallel tool calls are allowed: None when not said)."""
    if choice is None:
        return None, None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise _fail("Input should be an object of type 'auto', 'any', 'tool' or 'none'.", "tool_choice")
    if kind != "none" and not has_tools:
        raise _fail("tool_choice may only be specified while providing tools.", "tool_choice")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise _fail("Input should be a valid boolean.", "tool_choice.disable_parallel_tool_use")
    parallel = None if disable is None else not disable
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise _fail("Field required.", "tool_choice.name")
        return {"type": "function", "function": {"name": name}}, parallel
    return _TOOL_CHOICES[kind], parallel


def count_request_tokens(request: MessagesRequest) -> int:
    """The prompt's tokens as the gateway counts them (its messages, by the chat formula), plus the tools'
    definitions (their compact JSON), which the model reads too."""
    tokens = count_message_tokens(request.messages)
    if request.tools:
        tokens += count_tokens(json.dumps(request.tools, separators=(",", ":"), ensure_ascii=False))
    return tokens


# --- the answer ---------------------------------------------------------------------------------------------


def stop_reason(finish_reason: str | None) -> str:
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def ended_by(result: GenerationResult | None, stop: Sequence[str] | None) -> tuple[str, str | None]:
    """(``stop_reason``, ``stop_sequence``) of an answer: a stop sequence ended it when the model stopped
    and its text ends with one of the requested sequences (an OpenAI-kind model reports a plain "stop";
    those of its servers that keep the sequence in the text tell which one it was)."""
    finish_reason = result.finish_reason if result else None
    if result is not None and stop and finish_reason == "stop" and not result.tool_calls:
        for sequence in stop:
            if result.text.endswith(sequence):
                return "stop_sequence", sequence
    return stop_reason(finish_reason), None


def usage_body(result: GenerationResult) -> dict[str, int]:
    # No prompt caching happens on a translated call: Anthropic reports the cache counters all the same.
    return {
        "input_tokens": result.usage.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": result.usage.completion_tokens,
    }


def _tool_input(arguments: str) -> Any:
    """A tool call's arguments as the ``input`` object (arguments that are not a JSON object: empty)."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def content_blocks(result: GenerationResult) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if result.text or not result.tool_calls:
        blocks.append({"type": "text", "text": result.text})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)}
        for call in result.tool_calls
    )
    return blocks


def message_body(
    message_id: str, model_id: str, result: GenerationResult, stop: Sequence[str] | None = None
) -> dict[str, Any]:
    reason, sequence = ended_by(result, stop)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model_id,
        "content": content_blocks(result),
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_body(result),
    }


def sse(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {dumps(data)}\n\n"


class StreamEncoder:
    """The gateway's stream events as Anthropic's: blocks open as their content comes (text, or a tool call
    once its id and name arrive), one at a time, each closed before the next opens."""

    def __init__(self, message_id: str, model_id: str, prompt_tokens: int, stop: Sequence[str] | None = None) -> None:
        self.message_id = message_id
        self.model_id = model_id
        self.prompt_tokens = prompt_tokens
        self.stop = stop  # the request's stop sequences (``ended_by``)
        self._index = -1  # the open block's index (-1: none yet)
        self._open: str | None = None  # "text", or "tool:<index of the call>"

    def start(self) -> str:
        # The message as it begins: no content yet, the prompt's tokens as the gateway counted them, and the
        # first output token (the gateway starts a stream once the model produced it).
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model_id,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.prompt_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        return sse("message_start", {"type": "message_start", "message": message})

    def _begin(self, kind: str, block: dict[str, Any]) -> str:
        out = self._close()
        self._index += 1
        self._open = kind
        out += sse("content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block})
        if self._index == 0:
            out += sse("ping", {"type": "ping"})
        return out

    def _close(self) -> str:
        if self._open is None:
            return ""
        self._open = None
        return sse("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict[str, Any]) -> str:
        return sse("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def event(self, event: StreamEvent) -> str:
        out = ""
        if event.content:
            if self._open != "text":
                out += self._begin("text", {"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": event.content})
        for call in event.tool_calls:
            kind = f"tool:{call.index}"
            if call.id and self._open != kind:
                block = {"type": "tool_use", "id": call.id, "name": call.name or "", "input": {}}
                out += self._begin(kind, block)
            if call.arguments and self._open == kind:
                out += self._delta({"type": "input_json_delta", "partial_json": call.arguments})
        return out

    def finish(self, result: GenerationResult | None) -> str:
        out = self._close()
        output_tokens = result.usage.completion_tokens if result else 0
        usage: dict[str, int] = {"output_tokens": output_tokens}
        if result is not None:
            # The upstream's own count of the prompt, which message_start could only estimate.
            usage = {"input_tokens": result.usage.prompt_tokens, **usage}
        reason, sequence = ended_by(result, self.stop)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        out += sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        out += sse("message_stop", {"type": "message_stop"})
        return out
