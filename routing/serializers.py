"""Input and output serializers of the routing endpoints."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework import serializers

from spignosapi.fastpath.validation import validated

from .models import Strategy

ROLES = ("system", "developer", "user", "assistant", "tool")


class GenerateInput(serializers.Serializer[Any]):
    prompt = serializers.CharField(trim_whitespace=False, max_length=1_000_000)
    system = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=200_000)
    temperature = serializers.FloatField(min_value=0, max_value=2, default=0.7)
    top_p = serializers.FloatField(min_value=0, max_value=1, default=1.0)
    max_tokens = serializers.IntegerField(min_value=1, max_value=1_000_000, default=256)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=200)
    category = serializers.SlugField(required=False, max_length=50)
    model = serializers.CharField(required=False, max_length=260)
    stream = serializers.BooleanField(default=False)
    route_mode = serializers.ChoiceField(choices=settings.ROUTING_MODES, required=False)


class AttemptOutput(serializers.Serializer[Any]):
    model = serializers.CharField()
    outcome = serializers.CharField(help_text="ok, error, skipped_open, skipped_budget")
    error = serializers.CharField(required=False)
    reason = serializers.CharField(
        required=False,
        help_text="Under a category strategy other than ordered: why the model stood where it did, or was "
        'skipped (e.g. "latency p50 412 ms (38 samples)", "stale latency figures (1200 s old): chain order").',
    )


class MetaOutput(serializers.Serializer[Any]):
    request_id = serializers.CharField()
    tokens_used = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    response_time = serializers.CharField(help_text='e.g. "1.23s"')
    response_time_ms = serializers.FloatField()
    ttft_ms = serializers.FloatField(allow_null=True)
    model = serializers.CharField()
    provider = serializers.CharField()
    category = serializers.CharField(allow_null=True)
    route_mode = serializers.CharField()
    attempts = AttemptOutput(many=True)
    cost_usd = serializers.FloatField()
    energy_wh = serializers.FloatField(help_text="central estimate")
    co2e_g = serializers.FloatField(help_text="energy_wh × the grid's gCO2e/kWh")
    energy_wh_low = serializers.FloatField()
    energy_wh_high = serializers.FloatField()
    energy_estimated = serializers.BooleanField(help_text="the model's energy was estimated from its size")


class GenerateOutput(serializers.Serializer[Any]):
    output = serializers.CharField()
    meta = MetaOutput()


def _check_messages(messages: list[Any]) -> list[dict[str, Any]]:
    if not messages:
        raise serializers.ValidationError("At least one message is required.", code="empty")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise serializers.ValidationError(f"messages[{index}] must be an object.", code="invalid")
        role = message.get("role")
        if role not in ROLES:
            raise serializers.ValidationError(
                f"messages[{index}].role must be one of {', '.join(ROLES)}.", code="invalid_role"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise serializers.ValidationError(
                f"messages[{index}].content must be a string or a list.", code="invalid_content"
            )
        if content is None and role != "assistant":
            raise serializers.ValidationError(f"messages[{index}].content is required.", code="required")
    return messages


class ChatCompletionInput(serializers.Serializer[Any]):
    model = serializers.CharField(max_length=260)
    messages = serializers.ListField(child=serializers.JSONField(), max_length=10_000)
    temperature = serializers.FloatField(min_value=0, max_value=2, default=1.0, allow_null=True)
    top_p = serializers.FloatField(min_value=0, max_value=1, default=1.0, allow_null=True)
    max_tokens = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, allow_null=True)
    max_completion_tokens = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, allow_null=True)
    stop = serializers.JSONField(required=False, allow_null=True)
    tools = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True, max_length=128)
    tool_choice = serializers.JSONField(required=False, allow_null=True)
    stream = serializers.BooleanField(default=False, allow_null=True)
    stream_options = serializers.DictField(required=False, allow_null=True)
    user = serializers.CharField(required=False, allow_blank=True, max_length=200, allow_null=True)

    def validate_messages(self, value: list[Any]) -> list[dict[str, Any]]:
        return _check_messages(value)

    def validate_stop(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) <= 4 and all(isinstance(v, str) for v in value):
            return value
        raise serializers.ValidationError("stop must be a string or a list of up to 4 strings.")

    def validate_tool_choice(self, value: Any) -> Any:
        if value is None or value in ("none", "auto", "required") or isinstance(value, dict):
            return value
        raise serializers.ValidationError('tool_choice must be "none", "auto", "required" or an object.')

    def validate_tools(self, value: Any) -> Any:
        for index, tool in enumerate(value or []):
            function = tool.get("function")
            if tool.get("type") != "function" or not isinstance(function, dict) or not function.get("name"):
                raise serializers.ValidationError(f"tools[{index}] must be a function tool with a name.")
        return value or None


class ChatParamsInput(serializers.Serializer[Any]):
    """The chat-completions fields the gateway passes on (``Call.params``) without interpreting them, typed so
    that a wrong one is a clear 400 from the gateway rather than an upstream's; any other field passes as it
    came. Apart from ``ChatCompletionInput``, so that a body without them (most) pays nothing for them."""

    n = serializers.IntegerField(min_value=1, max_value=128, required=False, allow_null=True)
    seed = serializers.IntegerField(min_value=-(2**63), max_value=2**63 - 1, required=False, allow_null=True)
    logprobs = serializers.BooleanField(required=False, allow_null=True)
    top_logprobs = serializers.IntegerField(min_value=0, max_value=20, required=False, allow_null=True)
    presence_penalty = serializers.FloatField(min_value=-2, max_value=2, required=False, allow_null=True)
    frequency_penalty = serializers.FloatField(min_value=-2, max_value=2, required=False, allow_null=True)
    logit_bias = serializers.DictField(required=False, allow_null=True)
    parallel_tool_calls = serializers.BooleanField(required=False, allow_null=True)
    response_format = serializers.JSONField(required=False, allow_null=True)
    reasoning_effort = serializers.CharField(required=False, allow_null=True, max_length=20)
    metadata = serializers.DictField(required=False, allow_null=True)
    service_tier = serializers.CharField(required=False, allow_null=True, max_length=20)
    store = serializers.BooleanField(required=False, allow_null=True)

    def validate_response_format(self, value: Any) -> Any:
        return _check_response_format(value)


class ChatCompletionSchema(ChatCompletionInput, ChatParamsInput):
    """The whole chat-completions body, for the OpenAPI schema (validated as the two parts above)."""


# The fields of a chat-completions body the gateway itself interprets; every other one is a param.
CHAT_GATEWAY_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "stream",
        "stream_options",
        "user",
    }
)
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def chat_params(body: dict[str, Any]) -> dict[str, Any]:
    """The params (``Call.params``) of a chat-completions ``body``: every field the gateway does not interpret
    and that is not null, validated by ``ChatParamsInput`` where it types them (its ``ValidationError``)."""
    params = {name: value for name, value in body.items() if name not in CHAT_GATEWAY_FIELDS and value is not None}
    if params:
        params.update(validated(ChatParamsInput, params))
    return params


def _check_response_format(value: Any) -> Any:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise serializers.ValidationError(
            'response_format must be an object whose type is "text", "json_object" or "json_schema".'
        )
    if kind != "json_schema":
        return value
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise serializers.ValidationError("response_format.json_schema must be an object.")
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise serializers.ValidationError(
            "response_format.json_schema.name must be 1 to 64 letters, digits, underscores or dashes."
        )
    if "schema" in spec and not isinstance(spec["schema"], dict):
        raise serializers.ValidationError("response_format.json_schema.schema must be an object.")
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise serializers.ValidationError("response_format.json_schema.strict must be a boolean.")
    return value


class CategoryInput(serializers.Serializer[Any]):
    name = serializers.SlugField(max_length=50)
    description = serializers.CharField(required=False, allow_blank=True, max_length=300)
    keywords = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=500)
    models = serializers.ListField(child=serializers.CharField(max_length=260), required=False, max_length=50)
    examples = serializers.ListField(
        child=serializers.CharField(max_length=500),
        required=False,
        max_length=200,
        help_text="Example requests, for the semantic routing mode.",
    )
    strategy = serializers.ChoiceField(
        choices=Strategy.choices,
        required=False,
        help_text="How the chain is ordered for each request: ordered (as written, the default), latency, cost, "
        "carbon.",
        error_messages={"invalid_choice": f'"{{input}}" is not a strategy (one of {", ".join(Strategy.values)}).'},
    )


class ModelMappingInput(serializers.Serializer[Any]):
    category = serializers.SlugField(max_length=50)
    models = serializers.ListField(child=serializers.CharField(max_length=260), max_length=50)


class StringOnly(serializers.CharField):
    """A CharField that takes JSON strings only (DRF's turns a number into a string: 5 is no alias's name)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class AliasInput(serializers.Serializer[Any]):
    name = StringOnly(
        max_length=100,
        trim_whitespace=False,
        help_text="What clients send as `model`, e.g. `claude-sonnet-4-5` (its form: see the README).",
    )
    target = StringOnly(
        max_length=260, trim_whitespace=False, help_text="A category's name or a `<provider>/<model>` id."
    )


class ResponsesInput(serializers.Serializer[Any]):
    """``POST /v1/responses``: the fields the door reads (``input`` and the rest are checked as they are
    translated, in ``routing.responses_api``)."""

    model = serializers.CharField(max_length=260)
    input = serializers.JSONField()
    instructions = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False, max_length=200_000
    )
    tools = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True, max_length=128)
    tool_choice = serializers.JSONField(required=False, allow_null=True)
    text = serializers.DictField(required=False, allow_null=True)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    max_output_tokens = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, allow_null=True)
    user = serializers.CharField(required=False, allow_blank=True, max_length=200, allow_null=True)
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=512, allow_blank=True), required=False, allow_null=True
    )
    store = serializers.BooleanField(default=True, allow_null=True)
    stream = serializers.BooleanField(default=False, allow_null=True)
    previous_response_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    parallel_tool_calls = serializers.BooleanField(required=False, allow_null=True)
    reasoning = serializers.DictField(required=False, allow_null=True)
    include = serializers.ListField(child=serializers.CharField(max_length=100), required=False, allow_null=True)
    truncation = serializers.ChoiceField(choices=["auto", "disabled"], required=False, allow_null=True)
    background = serializers.BooleanField(required=False, allow_null=True)

    def validate_input(self, value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, list) and len(value) <= 10_000):
            return value
        raise serializers.ValidationError("input must be a string or a list of up to 10000 items.", code="invalid_type")

    def validate_metadata(self, value: Any) -> Any:
        if value is not None and len(value) > 16:
            raise serializers.ValidationError("metadata holds at most 16 keys.", code="too_many_keys")
        return value
