"""The OpenAI Responses API front door: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/<id>``.

A request is translated to the gateway's canonical (chat-completions shaped) ``Call``, so every backend
serves it: ``instructions`` → a system message, ``input`` (a string, or message / ``function_call`` /
``function_call_output`` items) → messages, function tools and ``tool_choice`` → their chat forms,
``text.format`` → ``params["response_format"]``, ``max_output_tokens`` → ``max_tokens``. The answer comes
back as a Response object (``output``: a ``message`` item, then a ``function_call`` item per tool call), or
as the typed event stream (``response.created`` … ``response.completed``, each with its ``sequence_number``).

``store`` (default true) keeps the answer and its conversation in the database (``routing.responses_store``),
so ``previous_response_id`` continues it and ``GET`` reads it back, for the key that made it only.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import KeyInfo
from llm import GenerationResult, LLMError, StreamEvent, ToolCall, count_message_tokens
from llm.providers.openai_responses import NATIVE_FORMAT
from llm.types import NativeEvent
from spignosapi.api.asyncviews import async_endpoint, authenticate, dumps, json_body, validated
from spignosapi.api.errors import InvalidRequest, NotFound
from spignosapi.api.schema import SSE_EVENT

from . import gateway, responses_store
from .api import SSE_HEADERS, stream_error_payload
from .errors import GatewayError
from .router import ROUTER_ALIASES
from .selectors import RoutingConfig, routing_config
from .serializers import ResponsesInput

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT_WINDOW = 8192  # a model's, unless its row says (LLMModel.context_window)
DEFAULT_MAX_TOKENS = 256  # as /v1/chat/completions: the most a call may use is reserved on the key's limits
MESSAGE_ROLES = ("user", "assistant", "system", "developer")


def _new_id(prefix: str) -> str:
    # Unguessable: a stored response is read by its id (and its key).
    return f"{prefix}_{uuid.uuid4().hex}"


def _invalid(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


# --- the request, translated ----------------------------------------------------------------------------------


def _text_of(part: dict[str, Any], where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise _invalid(f"{where}.text must be a string.", f"{where}.text", "invalid_type")
    return text


def _content_part(part: Any, where: str) -> dict[str, Any]:
    """A chat content part for a Responses content part (text or image)."""
    if not isinstance(part, dict):
        raise _invalid(f"{where} must be an object.", where, "invalid_type")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": _text_of(part, where)}
    if kind == "refusal":
        refusal = part.get("refusal")
        if not isinstance(refusal, str):
            raise _invalid(f"{where}.refusal must be a string.", f"{where}.refusal", "invalid_type")
        return {"type": "text", "text": refusal}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise _invalid(f"{where}.image_url must be a URL or a data URL (file_id is not supported).", where)
        detail = part.get("detail")
        return {"type": "image_url", "image_url": {"url": url, **({"detail": detail} if detail else {})}}
    raise _invalid(f"{where}.type {kind!r} is not supported.", f"{where}.type")


def _content(content: Any, role: str, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"{where}.content must be a string or a list of parts.", f"{where}.content", "invalid_type")
    parts = [_content_part(part, f"{where}.content[{index}]") for index, part in enumerate(content)]
    texts = [part["text"] for part in parts if part["type"] == "text"]
    # An assistant's (or a system's) content is text; a lone text part of a user's is the plain string.
    if role != "user" or (len(parts) == 1 and len(texts) == 1):
        if len(texts) != len(parts):
            raise _invalid(f"{where}.content: only a user message may hold images.", f"{where}.content")
        return "".join(texts)
    return parts


def _message_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise _invalid(f"{where}.role must be one of {', '.join(MESSAGE_ROLES)}.", f"{where}.role")
    return {"role": role, "content": _content(item.get("content"), role, where)}


def _string_field(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or (name != "arguments" and not value):
        raise _invalid(f"{where}.{name} must be a non-empty string.", f"{where}.{name}", "invalid_type")
    return value


def _add_function_call(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> None:
    """A ``function_call`` item: a tool call of the assistant message before it (consecutive calls are one
    assistant turn in chat form), or of a new one."""
    call = {
        "id": _string_field(item, "call_id", where),
        "type": "function",
        "function": {"name": _string_field(item, "name", where), "arguments": _string_field(item, "arguments", where)},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and isinstance(last.get("content") or "", str):
        last.setdefault("tool_calls", []).append(call)
        return
    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _function_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    output = item.get("output")
    if isinstance(output, list):
        output = "".join(_text_of(part, f"{where}.output[{i}]") for i, part in enumerate(output))
    if not isinstance(output, str):
        raise _invalid(f"{where}.output must be a string.", f"{where}.output", "invalid_type")
    return {"role": "tool", "tool_call_id": _string_field(item, "call_id", where), "content": output}


def input_messages(value: str | list[Any]) -> list[dict[str, Any]]:
    """The chat messages of a Responses ``input``; ``InvalidRequest`` naming the item that cannot be one."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f"{where} must be an object.", where, "invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            messages.append(_message_item(item, where))
        elif kind == "function_call":
            _add_function_call(messages, item, where)
        elif kind == "function_call_output":
            messages.append(_function_output(item, where))
        else:
            raise _invalid(
                f"{where}.type {kind!r} is not supported: message, function_call or function_call_output.",
                f"{where}.type",
            )
    return messages


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses function tools (``{"type": "function", "name", "parameters", …}``) in chat form."""
    if not tools:
        return None
    converted = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if tool.get("type") != "function":
            raise _invalid(f"{where}.type {tool.get('type')!r} is not supported: only function tools.", f"{where}.type")
        function = {"name": _string_field(tool, "name", where)}
        for name in ("description", "parameters", "strict"):
            if tool.get(name) is not None:
                function[name] = tool[name]
        converted.append({"type": "function", "function": function})
    return converted


def chat_tool_choice(choice: Any) -> str | dict[str, Any] | None:
    if choice is None or choice in ("none", "auto", "required"):
        return choice  # type: ignore[no-any-return]
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _invalid('tool_choice must be "none", "auto", "required" or {"type": "function", "name": …}.', "tool_choice")


def response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """``text.format`` as a chat ``response_format`` (None: plain text)."""
    spec = (text or {}).get("format")
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert isinstance(spec, dict)
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise _invalid("text.format.name is required for json_schema.", "text.format.name", "missing_required")
        if not isinstance(spec.get("schema"), dict):
            raise _invalid("text.format.schema must be an object.", "text.format.schema", "invalid_type")
        names = ("name", "description", "schema", "strict")
        schema = {name: spec[name] for name in names if spec.get(name) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise _invalid("text.format.type must be text, json_object or json_schema.", "text.format.type")


@dataclass
class Translated:
    """A validated request: the gateway call, what the Response object echoes, and the conversation so far."""

    call: gateway.Call
    echo: dict[str, Any]
    conversation: list[dict[str, Any]]  # previous response's conversation + this input (no instructions)
    store: bool
    input_items: list[dict[str, Any]] = field(default_factory=list)  # this request's input, with ids
    response_id: str = field(default_factory=lambda: _new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))


def _echo(data: dict[str, Any]) -> dict[str, Any]:
    """The request's fields as the Response object repeats them (OpenAI's defaults where absent)."""
    text = dict(data.get("text") or {})
    text.setdefault("format", {"type": "text"})
    reasoning = data.get("reasoning") or {}
    return {
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "parallel_tool_calls": True if data.get("parallel_tool_calls") is None else data["parallel_tool_calls"],
        "previous_response_id": data.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": data["store"] is not False,
        "temperature": 1.0 if data.get("temperature") is None else data["temperature"],
        "text": text,
        "tool_choice": "auto" if data.get("tool_choice") is None else data["tool_choice"],
        "tools": data.get("tools") or [],
        "top_p": 1.0 if data.get("top_p") is None else data["top_p"],
        "truncation": data.get("truncation") or "disabled",
        "user": data.get("user"),
        "metadata": data.get("metadata") or {},
    }


def _params(data: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions fields the gateway passes on without interpreting them (``Call.params``)."""
    params: dict[str, Any] = {}
    if (fmt := response_format(data.get("text"))) is not None:
        params["response_format"] = fmt
    if data.get("parallel_tool_calls") is not None:
        params["parallel_tool_calls"] = data["parallel_tool_calls"]
    if (effort := (data.get("reasoning") or {}).get("effort")) is not None:
        params["reasoning_effort"] = effort
    return params


def _refuse_unsupported(data: dict[str, Any]) -> None:
    """What the door cannot promise on every backend is refused rather than ignored.

    ``background``: a response run detached, polled and cancelled, needs an in-progress state and a worker;
    the platform has those for its async jobs (``/api/v1/jobs``), which is the one place for them.
    ``include``: the extra output it asks for (reasoning's encrypted content, search results, logprobs) is
    nothing a translated answer has.
    """
    if data.get("background"):
        raise _invalid(
            "background responses are not supported: use a streamed response, or the gateway's async jobs.",
            "background",
            "unsupported_parameter",
        )
    if data.get("include"):
        values = ", ".join(repr(value) for value in data["include"])
        raise _invalid(f"include {values} is not supported by this gateway.", "include", "unsupported_parameter")


_ITEM_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def stored_input_items(value: str | list[Any]) -> list[dict[str, Any]]:
    """A request's ``input`` as the items ``GET /v1/responses/<id>/input_items`` lists: each with an id (its
    own, or a new one) and a message's content as parts (``input_items`` of OpenAI's API reference)."""
    raw_items = [{"type": "message", "role": "user", "content": value}] if isinstance(value, str) else value
    items = []
    for raw in raw_items:
        item = {"type": raw.get("type", "message"), **raw}
        if item["type"] == "message":
            text_type = "output_text" if item["role"] == "assistant" else "input_text"
            content = item.get("content")
            if isinstance(content, str):
                item["content"] = [{"type": text_type, "text": content}]
        item.setdefault("id", _new_id(_ITEM_PREFIXES.get(item["type"], "item")))
        item.setdefault("status", "completed")
        items.append(item)
    return items


def responses_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages (a stored conversation) as Responses input items: what an upstream that serves the
    Responses API is sent in place of a ``previous_response_id`` only the gateway knows."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            items.append(
                {"type": "function_call_output", "call_id": message["tool_call_id"], "output": message["content"]}
            )
            continue
        content = message.get("content")
        if isinstance(content, list):  # a user's text and image parts
            content = [
                {"type": "input_text", "text": part["text"]}
                if part["type"] == "text"
                else {"type": "input_image", "image_url": part["image_url"]["url"]}
                for part in content
            ]
        if content or not message.get("tool_calls"):
            items.append({"type": "message", "role": role, "content": content or ""})
        for call in message.get("tool_calls") or ():
            function = call["function"]
            items.append(
                {
                    "type": "function_call",
                    "call_id": call["id"],
                    "name": function["name"],
                    "arguments": function["arguments"],
                }
            )
    return items


def native_body(
    raw: dict[str, Any], previous: list[dict[str, Any]], kept: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The body an OpenAI-kind model is sent as it came (``Call.native``), but for what only the gateway
    knows: a ``previous_response_id`` becomes the stored conversation's items before the input (``kept``:
    the conversation that is left once ``truncation`` dropped its oldest items), and the upstream keeps
    nothing (``store`` false): the gateway stores the answer, under its own id."""
    body = {k: v for k, v in raw.items() if k not in ("model", "previous_response_id", "stream")}
    if kept is not None:
        body["input"] = responses_items(kept)
    elif previous:
        new = raw["input"] if isinstance(raw["input"], list) else [{"role": "user", "content": raw["input"]}]
        body["input"] = [*responses_items(previous), *new]
    body["store"] = False
    return body


def context_window(config: RoutingConfig, model: str) -> int:
    """The smallest context window of the chat models that may serve ``model`` (a model, a category, an
    alias of either, or the router), for ``truncation: auto``."""
    alias = config.aliases.get(model)
    if alias is not None:
        model = alias.model or alias.category or model
    if model in config.models:
        candidates: Sequence[str] = (model,)
    elif model in config.categories:
        candidates = config.categories[model].chain
    else:  # routed: any chat model
        candidates = list(config.models)
    chat = [config.models[m] for m in candidates if m in config.models and config.models[m].kind == "chat"]
    return min((info.context_window for info in chat), default=DEFAULT_CONTEXT_WINDOW)


def truncate(
    conversation: list[dict[str, Any]], instructions: str | None, max_tokens: int, window: int
) -> list[dict[str, Any]]:
    """``truncation: auto``: the conversation without its oldest items, as many as the prompt and the answer's
    ``max_tokens`` need to fit ``window`` (a tool result is dropped with the call it answers). A last item
    that does not fit alone is the client's error (400 ``context_length_exceeded``)."""
    system = [{"role": "system", "content": instructions}] if instructions else []
    kept = conversation
    while count_message_tokens([*system, *kept]) + max_tokens > window:
        if len(kept) <= 1:
            raise _invalid(
                f"The input does not fit the model's context window of {window} tokens, even truncated.",
                "input",
                "context_length_exceeded",
            )
        kept = kept[1:]
        while len(kept) > 1 and kept[0]["role"] == "tool":
            kept = kept[1:]
    return kept


def responses_request(
    data: dict[str, Any],
    *,
    key: KeyInfo,
    request_id: str,
    previous: list[dict[str, Any]],
    raw: dict[str, Any] | None = None,
    window: int = 0,
) -> Translated:
    """The request of a body validated by ``ResponsesInput``, continuing the ``previous`` conversation.
    ``raw``: the body as it came, for a model that serves the Responses API itself (``native_body``);
    ``window``: the context window ``truncation: auto`` fits the conversation to (``context_window``)."""
    _refuse_unsupported(data)
    conversation = [*previous, *input_messages(data["input"])]
    if not conversation:
        raise _invalid("input must hold at least one item.", "input", "empty")
    instructions = data.get("instructions")
    max_tokens = data.get("max_output_tokens") or DEFAULT_MAX_TOKENS
    kept: list[dict[str, Any]] | None = None
    if data.get("truncation") == "auto" and window:
        kept = truncate(conversation, instructions, max_tokens, window)
        kept = None if len(kept) == len(conversation) else kept
    sent = conversation if kept is None else kept
    messages = [{"role": "system", "content": instructions}, *sent] if instructions else list(sent)
    model = data["model"]
    call = gateway.Call(
        key=key,
        request_id=request_id,
        endpoint="responses",
        messages=messages,
        temperature=1.0 if data.get("temperature") is None else data["temperature"],
        top_p=1.0 if data.get("top_p") is None else data["top_p"],
        max_tokens=max_tokens,
        tools=chat_tools(data.get("tools")),
        tool_choice=chat_tool_choice(data.get("tool_choice")),
        user_id=data.get("user") or "",
        model=None if model in ROUTER_ALIASES else model,
        stream=bool(data.get("stream")),
        params=_params(data),
        native=None if raw is None else {NATIVE_FORMAT: native_body(raw, previous, kept)},
    )
    store = data["store"] is not False
    return Translated(call, _echo(data), conversation, store=store, input_items=stored_input_items(data["input"]))


# --- the answer ----------------------------------------------------------------------------------------------


def _usage(result: GenerationResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    u = result.usage
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens,
    }


def _message_output(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "content": [_text_part(text)] if status != "in_progress" else [],
        "role": "assistant",
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _call_output(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def _status(result: GenerationResult | None) -> str:
    return "incomplete" if result is not None and result.finish_reason == "length" else "completed"


def response_object(
    request: Translated, *, model: str, status: str, output: list[dict[str, Any]], result: GenerationResult | None
) -> dict[str, Any]:
    """The Response object, as OpenAI's (``status``: in_progress, completed, incomplete or failed)."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": request.response_id,
        "object": "response",
        "created_at": request.created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": request.echo["instructions"],
        "max_output_tokens": request.echo["max_output_tokens"],
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": request.echo["parallel_tool_calls"],
        "previous_response_id": request.echo["previous_response_id"],
        "reasoning": request.echo["reasoning"],
        "service_tier": "default",
        "store": request.store,
        "temperature": request.echo["temperature"],
        "text": request.echo["text"],
        "tool_choice": request.echo["tool_choice"],
        "tools": request.echo["tools"],
        "top_logprobs": 0,
        "top_p": request.echo["top_p"],
        "truncation": request.echo["truncation"],
        "usage": _usage(result),
        "user": request.echo["user"],
        "metadata": request.echo["metadata"],
    }


def _assistant_message(text: str, calls: tuple[ToolCall, ...]) -> dict[str, Any]:
    """The answer as a chat message, the next turn's context (``previous_response_id``)."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    return message


async def _store(request: Translated, body: dict[str, Any], result: GenerationResult | None) -> None:
    """Keep a finished answer (``store``): its body and its conversation, one INSERT."""
    if not request.store:
        return
    answer = _assistant_message(result.text, result.tool_calls) if result is not None else _assistant_message("", ())
    conversation = [*request.conversation, answer]
    key = request.call.key
    assert key is not None
    await sync_to_async(responses_store.save, thread_sensitive=False)(
        request.response_id, key.id, body, conversation, request.input_items
    )


def own_response(request: Translated, upstream: Mapping[str, Any], model_id: str) -> dict[str, Any]:
    """An upstream's Response object as the gateway answers it: its id (the one stored), the model that
    answered, and the request's own fields the upstream was sent otherwise (``native_body``)."""
    echo = request.echo
    return {
        **upstream,
        "id": request.response_id,
        "model": model_id,
        "max_output_tokens": echo["max_output_tokens"],
        "previous_response_id": echo["previous_response_id"],
        "store": echo["store"],
    }


def _route_header(category: str, model_id: str, attempts: int) -> str:
    return f"{category or '-'}/{model_id}/{attempts}"


# --- the views -----------------------------------------------------------------------------------------------


async def _previous_conversation(data: dict[str, Any], key: KeyInfo) -> list[dict[str, Any]]:
    response_id = data.get("previous_response_id")
    if not response_id:
        return []
    stored = await sync_to_async(responses_store.load, thread_sensitive=False)(response_id, key.id)
    if stored is None:  # unknown, expired or another key's: the same answer, so existence does not leak
        raise NotFound(
            f"Previous response with id {response_id!r} not found.",
            code="previous_response_not_found",
            param="previous_response_id",
        )
    conversation: list[dict[str, Any]] = stored.conversation
    return conversation


async def _create(request: HttpRequest) -> HttpResponseBase:
    key = await authenticate(request)
    raw = json_body(request)
    data = validated(ResponsesInput, raw)
    previous = await _previous_conversation(data, key)
    request_id = request.request_id  # type: ignore[attr-defined]
    window = context_window(await routing_config.aget(), data["model"]) if data.get("truncation") == "auto" else 0
    translated = responses_request(data, key=key, request_id=request_id, previous=previous, raw=raw, window=window)
    if translated.call.stream:
        return await _create_stream(translated)
    completion = await gateway.complete(translated.call)
    result = completion.result
    if result.native is not None:  # an OpenAI model's own Response object
        body = own_response(translated, result.native, completion.model_id)
    else:
        status = _status(result)
        output: list[dict[str, Any]] = []
        if result.text or not result.tool_calls:
            output.append(_message_output(_new_id("msg"), result.text, status))
            if result.refusal and not result.text:  # the model declined: a refusal part, as OpenAI's
                output[-1]["content"] = [{"type": "refusal", "refusal": result.refusal}]
        for call in result.tool_calls:
            output.append(_call_output(_new_id("fc"), call.id, call.name, call.arguments, "completed"))
        body = response_object(translated, model=completion.model_id, status=status, output=output, result=result)
    await _store(translated, body, result)
    response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
    response["X-Spignos-Route"] = _route_header(completion.category, completion.model_id, completion.attempts)
    for header, name in (("Cost-USD", "cost_usd"), ("Energy-Wh", "energy_wh"), ("CO2e-g", "co2e_g")):
        response[f"X-Spignos-{header}"] = repr(completion.meta[name])
    return response


class _Events:
    """The typed event stream of one response: each event numbered, the output items in the order they open."""

    def __init__(self, request: Translated, model: str) -> None:
        self.request = request
        self.model = model
        self.sequence = 0
        self.output: list[dict[str, Any]] = []  # the items, as they stand
        self.message: dict[str, Any] | None = None  # the open message item
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}  # open function_call items by the model's tool index

    def event(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return f"event: {kind}\ndata: {dumps(payload)}\n\n"

    def response(self, status: str, result: GenerationResult | None = None) -> dict[str, Any]:
        return response_object(self.request, model=self.model, status=status, output=self.output, result=result)

    def start(self) -> list[str]:
        body = self.response("in_progress")
        return [self.event("response.created", response=body), self.event("response.in_progress", response=body)]

    def delta(self, event: StreamEvent) -> list[str]:
        events: list[str] = []
        if event.content:
            if self.message is None:
                events += self._open_message()
            assert self.message is not None
            self.text.append(event.content)
            events.append(
                self.event(
                    "response.output_text.delta",
                    item_id=self.message["id"],
                    output_index=self.output.index(self.message),
                    content_index=0,
                    delta=event.content,
                    logprobs=[],
                )
            )
        for piece in event.tool_calls:
            item = self.calls.get(piece.index)
            if item is None:
                events += self._close_message("completed")
                item = self.calls[piece.index] = _call_output(
                    _new_id("fc"), piece.id or _new_id("call"), piece.name or "", "", "in_progress"
                )
                self.output.append(item)
                events.append(
                    self.event("response.output_item.added", output_index=len(self.output) - 1, item=dict(item))
                )
            if piece.arguments:
                item["arguments"] += piece.arguments
                events.append(
                    self.event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=self.output.index(item),
                        delta=piece.arguments,
                    )
                )
        return events

    def _open_message(self) -> list[str]:
        self.message = _message_output(_new_id("msg"), "", "in_progress")
        self.output.append(self.message)
        index = len(self.output) - 1
        item_id = self.message["id"]
        return [
            self.event("response.output_item.added", output_index=index, item=dict(self.message)),
            self.event(
                "response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=_text_part("")
            ),
        ]

    def _close_message(self, status: str) -> list[str]:
        message, self.message = self.message, None
        if message is None:
            return []
        text = "".join(self.text)
        index = self.output.index(message)
        message.update(_message_output(message["id"], text, status))
        common = {"item_id": message["id"], "output_index": index, "content_index": 0}
        return [
            self.event("response.output_text.done", **common, text=text, logprobs=[]),
            self.event("response.content_part.done", **common, part=_text_part(text)),
            self.event("response.output_item.done", output_index=index, item=message),
        ]

    def failed(self, error: dict[str, Any], result: GenerationResult | None = None) -> str:
        """``response.failed``: the response as it stood (with its usage, if it was over)."""
        failed = self.response("failed", result)
        failed["error"] = error
        return self.event("response.failed", response=failed)

    def finish(self, result: GenerationResult | None) -> tuple[list[str], dict[str, Any]]:
        """The closing events but the last, and the final Response object."""
        status = _status(result)
        # A model that said nothing at all still answers one (empty) message, as OpenAI's do.
        events = self._open_message() if not self.output else []
        events += self._close_message(status)
        for item in self.calls.values():
            item["status"] = "completed"
            index = self.output.index(item)
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            events.append(self.event("response.output_item.done", output_index=index, item=item))
        return events, self.response(status, result)


class _NativeEvents:
    """An OpenAI model's own event stream, relayed as it came but for the Response objects it carries
    (``own_response``); its last event (``response.completed`` or ``.incomplete``) waits for the store."""

    def __init__(self, request: Translated, model: str) -> None:
        self.request = request
        self.model = model
        self.last: tuple[str, dict[str, Any]] | None = None
        self.current: dict[str, Any] | None = None  # the Response object as the last event that had one said
        self.sequence = 0  # the next event's number, for one the gateway adds (response.failed)

    def relay(self, native: tuple[NativeEvent, ...]) -> list[str]:
        out: list[str] = []
        for kind, payload in native:
            if isinstance(payload.get("response"), dict):
                self.current = own_response(self.request, payload["response"], self.model)
                payload = {**payload, "response": self.current}
            if isinstance(payload.get("sequence_number"), int):
                self.sequence = payload["sequence_number"] + 1
            if kind in ("response.completed", "response.incomplete"):
                self.last = (kind, dict(payload))
                continue
            out.append(f"event: {kind}\ndata: {dumps(payload)}\n\n")
        return out

    def final(self) -> dict[str, Any]:
        assert self.last is not None  # the provider ends a stream on it, or raises
        response: dict[str, Any] = self.last[1]["response"]
        return response

    def end(self) -> str:
        assert self.last is not None
        kind, payload = self.last
        return f"event: {kind}\ndata: {dumps(payload)}\n\n"

    def failed(self, error: dict[str, Any], response: dict[str, Any] | None = None) -> str:
        """``response.failed``, after the events relayed (with ``response`` as it stood, if it was over)."""
        base = response or self.current or own_response(self.request, {"output": [], "usage": None}, self.model)
        response = {**base, "status": "failed", "error": error}
        payload = {"type": "response.failed", "response": response, "sequence_number": self.sequence}
        return f"event: response.failed\ndata: {dumps(payload)}\n\n"


async def _create_stream(request: Translated) -> HttpResponseBase:
    stream = gateway.streaming(request.call)
    await stream.start()  # errors before any token are plain HTTP errors
    events = _Events(request, stream.model_id)
    native = _NativeEvents(request, stream.model_id)

    async def body() -> AsyncIterator[str]:
        relayed: bool | None = None  # whether the model streams its own events: known from its first one
        try:
            async with stream:  # first, so that a client gone during the opening events is booked too
                async for event in stream:
                    if relayed is None:
                        relayed = event.native is not None
                        if not relayed:
                            for chunk in events.start():
                                yield chunk
                    if event.native is not None:
                        for chunk in native.relay(event.native):
                            yield chunk
                    elif event.type == "delta":
                        for chunk in events.delta(event):
                            yield chunk
        except (LLMError, GatewayError) as exc:
            # The status line was sent: the stream ends as OpenAI's does when a response fails (nothing stored).
            error = {key: stream_error_payload(exc)[key] for key in ("code", "message")}
            yield native.failed(error) if relayed else events.failed(error)
            return
        if relayed:
            final = native.final()
        else:
            closing, final = events.finish(stream.result)
            for chunk in closing:
                yield chunk
        try:
            await _store(request, final, stream.result)
        except DatabaseError:
            # Asked to keep it and could not: the client must not count on a previous_response_id that is not
            # there (a JSON answer would be a 503 database_unavailable; the status line was sent already).
            logger.warning("a streamed response could not be stored", exc_info=True)
            error = {"code": "database_unavailable", "message": "The response could not be stored."}
            yield native.failed(error, final) if relayed else events.failed(error, stream.result)
            return
        yield native.end() if relayed else events.event(f"response.{final['status']}", response=final)

    response = StreamingHttpResponse(body(), content_type="text/event-stream", headers=SSE_HEADERS)
    response["X-Spignos-Route"] = _route_header(stream.category, stream.model_id, stream.attempts)
    return response


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id {response_id!r} not found.", code="response_not_found")


async def _retrieve(request: HttpRequest, response_id: str) -> HttpResponseBase:
    key = await authenticate(request)
    stored = await sync_to_async(responses_store.load, thread_sensitive=False)(response_id, key.id)
    if stored is None:
        raise _not_found(response_id)
    return JsonResponse(stored.body, json_dumps_params={"ensure_ascii": False})


async def _delete(request: HttpRequest, response_id: str) -> HttpResponseBase:
    key = await authenticate(request)
    if not await sync_to_async(responses_store.delete, thread_sensitive=False)(response_id, key.id):
        raise _not_found(response_id)
    return JsonResponse({"id": response_id, "object": "response", "deleted": True})


def _page_params(request: HttpRequest) -> tuple[str | None, int, str]:
    """``after``, ``limit`` (1..100, default 20) and ``order`` (asc or desc, the default) of a list."""
    after = request.GET.get("after") or None
    order = request.GET.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise _invalid("order must be asc or desc.", "order")
    raw_limit = request.GET.get("limit") or "20"
    limit = int(raw_limit) if raw_limit.isdigit() else 0
    if not 1 <= limit <= 100:
        raise _invalid("limit must be an integer between 1 and 100.", "limit")
    return after, limit, order


async def _input_items(request: HttpRequest, response_id: str) -> HttpResponseBase:
    key = await authenticate(request)
    after, limit, order = _page_params(request)
    stored = await sync_to_async(responses_store.load, thread_sensitive=False)(response_id, key.id)
    if stored is None:
        raise _not_found(response_id)
    items: list[dict[str, Any]] = stored.input_items if order == "asc" else stored.input_items[::-1]
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise _invalid(f"No input item with id {after!r} in this response.", "after")
        start = ids.index(after) + 1
    page = items[start : start + limit]
    return JsonResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(items),
        },
        json_dumps_params={"ensure_ascii": False},
    )


class ResponsesView(APIView):
    """Schema of ``POST /v1/responses`` (served by the async view below)."""

    @extend_schema(
        operation_id="create_response",
        summary="OpenAI Responses API: create a response",
        request=ResponsesInput,
        responses={(200, "application/json"): dict, (200, "text/event-stream"): SSE_EVENT},
        description="OpenAI's Responses API on any backend (translated over chat completions): `input` as a string "
        "or items (message, function_call, function_call_output), `instructions`, function `tools`, `tool_choice`, "
        "`text.format`, `previous_response_id`, `store` (default true), `stream` (typed events).",
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


class ResponseView(APIView):
    """Schema of ``GET``/``DELETE /v1/responses/<id>``."""

    @extend_schema(operation_id="retrieve_response", summary="A stored response (the key's own)", responses={200: dict})
    def get(self, request: Request, response_id: str) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError

    @extend_schema(operation_id="delete_response", summary="Delete a stored response", responses={200: dict})
    def delete(self, request: Request, response_id: str) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


class ResponseInputItemsView(APIView):
    """Schema of ``GET /v1/responses/<id>/input_items``."""

    @extend_schema(
        operation_id="list_response_input_items",
        summary="A stored response's input items (paginated: after, limit, order)",
        parameters=[
            OpenApiParameter("after", str, description="The id of the item to list after."),
            OpenApiParameter("limit", int, description="How many items (1..100, default 20)."),
            OpenApiParameter("order", str, enum=["asc", "desc"], description="desc (newest first, the default)."),
        ],
        responses={200: dict},
    )
    def get(self, request: Request, response_id: str) -> Response:  # pragma: no cover - documentation only
        raise NotImplementedError


responses_view = async_endpoint(ResponsesView, {"POST": _create})
input_items_view = async_endpoint(ResponseInputItemsView, {"GET": _input_items})
response_view = async_endpoint(ResponseView, {"GET": _retrieve, "DELETE": _delete})
