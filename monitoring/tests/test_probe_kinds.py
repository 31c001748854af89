"""The tool-call and structured-output probes, against the fake upstream over real HTTP: what they ask, when
an answer is valid, and the validity rate per model in the statistics, the stats API and the probe log."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_django import Settings

from accounts.services import apikey_create
from llm.types import GenerationResult, Timings, ToolCall, Usage
from monitoring import services
from monitoring.models import ModelStats, ProbeKind
from monitoring.probes import PROBE_SCHEMA, PROBE_TOOL, Outcome, ProbeSpec, invalid_answer, probe_one
from routing.engine import handler_for
from routing.selectors import routing_config
from spignosapi import loops
from tests.fixtures import Fake, Gateway
from tests.http import call

from .factories import NOW, add_model, demo, make_probe

pytestmark = pytest.mark.django_db(transaction=True)


def probe(model_id: str, kind: str, settings: Settings, *, answer_max_tokens: int = 200) -> Outcome:
    spec = ProbeSpec(
        prompt=settings.MONITORING_PROBE_PROMPT, max_tokens=16, timeout_s=10.0, answer_max_tokens=answer_max_tokens
    )
    handler = handler_for(routing_config.get().providers)
    return loops.run(probe_one(handler, model_id, spec, kind=kind, now=lambda: NOW))


def answer(text: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> GenerationResult:
    return GenerationResult(
        text=text,
        finish_reason="tool_calls" if tool_calls else "stop",
        tool_calls=tool_calls,
        usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
        timings=Timings(ttft_ms=10.0, total_ms=20.0, tokens_per_sec=100.0),
        model="m",
        provider="p",
    )


def test_a_model_marked_for_both_is_probed_for_each_kind_and_its_status_comes_from_the_stream(
    monitored: Fake,
) -> None:
    fast = demo("demo-fast")
    plain = add_model("plain")  # supports neither

    rows = services.probe_run(model_pks=[fast.pk, plain.pk], now=lambda: NOW)

    assert [(r.model.name, r.kind, r.ok, r.error_type, r.http_status) for r in rows] == [
        ("demo-fast", "stream", True, "", 200),
        ("demo-fast", "tool_call", True, "", 200),
        ("demo-fast", "structured_output", True, "", 200),
        ("plain", "stream", True, "", 200),
    ]
    stats = ModelStats.objects.get(model=fast)
    assert stats.last_probe_id == rows[0].pk
    assert stats.validity_24h == {"tool_call": 100.0, "structured_output": 100.0}
    assert ModelStats.objects.get(model=plain).validity_24h == {"tool_call": None, "structured_output": None}


def test_the_tool_call_probe_offers_one_tool_and_forces_it(monitored: Fake, settings: Settings) -> None:
    outcome = probe("demo/demo-fast", ProbeKind.TOOL_CALL, settings)

    assert (outcome.ok, outcome.kind, outcome.error_type, outcome.error) == (True, "tool_call", "", "")
    assert outcome.ttfb_ms is not None and outcome.completion_tokens is not None
    body = monitored.stats()["last"]["demo-fast"]  # type: ignore[index]  # the fake's stats are JSON: object
    assert body["stream"] is True
    assert body["tools"] == [PROBE_TOOL]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "record_greeting"}}


def test_the_structured_output_probe_asks_for_its_schema(monitored: Fake, settings: Settings) -> None:
    outcome = probe("demo/demo-fast", ProbeKind.STRUCTURED_OUTPUT, settings)

    assert (outcome.ok, outcome.kind, outcome.error_type, outcome.error) == (True, "structured_output", "", "")
    body = monitored.stats()["last"]["demo-fast"]  # type: ignore[index]  # the fake's stats are JSON: object
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "greeting", "strict": True, "schema": PROBE_SCHEMA},
    }
    assert body["max_tokens"] == 200  # room for the whole object: a cut answer would be invalid


def test_a_call_that_succeeds_with_an_invalid_answer_is_a_failed_probe(monitored: Fake, settings: Settings) -> None:
    # "tool": 0 makes the fake ignore the tools and answer in words; 4 tokens cut its JSON answer short.
    monitored.configure(**{"demo-fast": {"tool": 0}})

    ignored = probe("demo/demo-fast", ProbeKind.TOOL_CALL, settings)
    cut = probe("demo/demo-smart", ProbeKind.STRUCTURED_OUTPUT, settings, answer_max_tokens=4)

    assert (ignored.ok, ignored.error_type, ignored.http_status, ignored.ttfb_ms) == (
        False,
        "invalid_answer",
        200,
        None,
    )
    assert ignored.error == "no call of the forced tool record_greeting (tools called: none)"
    assert (cut.ok, cut.error_type, cut.http_status) == (False, "invalid_answer", 200)
    assert cut.error.startswith("the answer is not JSON: ")


def test_a_call_that_fails_is_recorded_as_its_error_not_as_an_invalid_answer(
    monitored: Fake, settings: Settings
) -> None:
    monitored.configure(**{"demo-fast": {"status": 503}})

    outcome = probe("demo/demo-fast", ProbeKind.TOOL_CALL, settings)

    assert (outcome.ok, outcome.error_type, outcome.http_status) == (False, "upstream_error", 503)


@pytest.mark.parametrize(
    ("kind", "result", "why"),
    [
        (ProbeKind.TOOL_CALL, answer(tool_calls=(ToolCall("c1", "record_greeting", '{"greeting": "hi"}'),)), None),
        (
            ProbeKind.TOOL_CALL,
            answer(tool_calls=(ToolCall("c1", "delete_everything", "{}"),)),
            "no call of the forced tool record_greeting (tools called: delete_everything)",
        ),
        (
            ProbeKind.TOOL_CALL,
            answer(tool_calls=(ToolCall("c1", "record_greeting", '{"greeting": '),)),
            "the tool call's arguments are not JSON: Expecting value: line 1 column 14 (char 13)",
        ),
        (
            ProbeKind.TOOL_CALL,
            answer(tool_calls=(ToolCall("c1", "record_greeting", '["hi"]'),)),
            "the tool call's arguments are not a JSON object",
        ),
        (ProbeKind.STRUCTURED_OUTPUT, answer(json.dumps({"greeting": "hi", "language": "fr"})), None),
        (
            ProbeKind.STRUCTURED_OUTPUT,
            answer(json.dumps({"greeting": "hi", "language": "es"})),
            "the answer does not match the schema: 'es' is not one of ['en', 'fr', 'de']",
        ),
        (
            ProbeKind.STRUCTURED_OUTPUT,
            answer(json.dumps({"greeting": "hi"})),
            "the answer does not match the schema: 'language' is a required property",
        ),
        (
            ProbeKind.STRUCTURED_OUTPUT,
            answer("Hello!"),
            "the answer is not JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        (ProbeKind.STREAM, answer("anything"), None),
    ],
)
def test_an_answer_is_valid_only_when_it_does_what_the_probe_asked(
    kind: str, result: GenerationResult, why: str | None
) -> None:
    assert invalid_answer(kind, result) == why


def test_the_validity_rate_per_kind_is_in_the_stats_and_the_probe_log_filters_by_kind(
    gateway: Gateway, monitored: Fake
) -> None:
    _, raw = apikey_create(name="k")
    fast = demo("demo-fast")
    now = timezone.now().replace(microsecond=0)
    make_probe(fast, now - timedelta(minutes=1), last=True)
    for minutes in (2, 3, 4):
        make_probe(fast, now - timedelta(minutes=minutes), kind="tool_call")
    failed: dict[str, Any] = {"status": "unknown", "kind": "tool_call"}
    make_probe(fast, now - timedelta(minutes=5), **failed, http_status=200, error_type="invalid_answer")
    make_probe(fast, now - timedelta(minutes=6), **failed, http_status=429, error_type="rate_limited")
    make_probe(fast, now - timedelta(hours=25), kind="structured_output", status="unknown")  # older than 24 h
    services.stats_refresh()

    stats = call("GET", gateway.url + "/api/v1/monitoring/stats", key=raw).json()["models"]
    log = call("GET", gateway.url + "/api/v1/monitoring/results?kind=tool_call", key=raw).json()
    wrong = call("GET", gateway.url + "/api/v1/monitoring/results?kind=vision", key=raw)

    by_model = {row["model"]: row for row in stats}
    # 3 valid of 4 (the 429 counts as neither); the failed tool-call probe costs the model no availability.
    assert by_model["demo/demo-fast"]["validity_24h"] == {"tool_call": 75.0, "structured_output": None}
    assert by_model["demo/demo-fast"]["availability"]["24h"] == 100.0
    assert by_model["demo/demo-smart"]["validity_24h"] == {"tool_call": None, "structured_output": None}
    assert [(p["kind"], p["error_type"]) for p in log["results"]] == [
        ("tool_call", None),
        ("tool_call", None),
        ("tool_call", None),
        ("tool_call", "invalid_answer"),
        ("tool_call", "rate_limited"),
    ]
    assert wrong.status == 400 and wrong.json()["error"]["param"] == "kind"
