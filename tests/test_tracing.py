"""OpenTelemetry traces of real processes, exported over OTLP/HTTP to a fake collector on loopback.

A gateway server and a Celery worker (on a private broker, so no other worker takes the job) export to
``tests/otlp.py``'s collector; the fake upstream fails a model to make the router fall back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.services import apikey_create
from jobs.models import Job
from llm import count_message_tokens
from tests.fixtures import Fake, Gateway, _stop, start_gateway, start_worker, stop_group
from tests.helpers import private_redis, wait_until
from tests.http import call
from tests.otlp import Collector, ExportedSpan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# Spans reach the collector within a tenth of a second of ending (the default batch delay is 5 s).
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    with private_redis() as (url, _):
        yield url


@pytest.fixture(scope="module")
def traced_gateway_server(django_db_setup: None, collector: Collector, broker_url: str) -> Iterator[Gateway]:
    server = start_gateway(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "CELERY_BROKER_URL": broker_url, **FAST_EXPORT}
    )
    try:
        yield server
    finally:
        _stop(server.proc)


@pytest.fixture
def traced_gateway(traced_gateway_server: Gateway, seeded: Fake) -> Gateway:
    return traced_gateway_server


@pytest.fixture
def traced_worker(traced_gateway: Gateway, collector: Collector, broker_url: str, tmp_path: Path) -> Iterator[Path]:
    """A worker exporting to the collector, logging JSON at INFO to the file it yields."""
    log = tmp_path / "worker.log"
    proc = start_worker(
        name=f"tracing-{uuid.uuid4().hex[:8]}",
        log=log,
        broker_url=broker_url,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "LOG_FORMAT": "json", **FAST_EXPORT},
    )
    try:
        yield log
    finally:
        stop_group(proc)


def server_span(collector: Collector, request_id: str) -> ExportedSpan | None:
    found = [
        s for s in collector.received() if s.kind == "SERVER" and s.attributes.get("spignos.request_id") == request_id
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def strings_in(spans: list[ExportedSpan]) -> list[str]:
    values: list[str] = []
    for span in spans:
        for value in [span.name, span.status_message, *span.attributes.values()]:
            values.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    return values


def test_a_request_is_one_trace_through_routing_and_each_model_it_tried(
    traced_gateway: Gateway, fake: Fake, collector: Collector
) -> None:
    fake.configure(**{"demo-smart": {"status": 503}})  # reasoning: demo-smart fails, demo-fast answers
    _, raw = apikey_create(name="k")
    prompt = "explain why the sky is blue"
    reply = call(
        "POST",
        traced_gateway.url + "/api/v1/generate",
        {"prompt": prompt, "max_tokens": 4},
        key=raw,
        headers={"X-Request-ID": "trace-sync-1"},
    )
    assert reply.status == 200, reply.text
    output = reply.json()["output"]

    # The server span ends last: once it has arrived, its children have too.
    assert wait_until(lambda: server_span(collector, "trace-sync-1") is not None, timeout=20)
    server = server_span(collector, "trace-sync-1")
    assert server is not None
    spans = {span.name: span for span in collector.trace(server.trace_id)}
    assert sorted(spans) == ["POST /api/v1/generate", "chat demo/demo-fast", "chat demo/demo-smart", "gateway.route"]

    assert (server.kind, server.parent_id, server.service, server.status) == ("SERVER", "", "spignosapi-web", "UNSET")
    assert {k: server.attributes[k] for k in ("http.request.method", "http.route", "http.response.status_code")} == {
        "http.request.method": "POST",
        "http.route": "/api/v1/generate",
        "http.response.status_code": 200,
    }

    route = spans["gateway.route"]
    assert (route.parent_id, route.kind, route.status) == (server.span_id, "INTERNAL", "UNSET")
    assert route.attributes == {
        "spignos.request_id": "trace-sync-1",
        "spignos.endpoint": "generate",
        "spignos.route.requested_mode": "keywords",
        "spignos.route.category": "reasoning",
        "spignos.route.mode": "keywords",
        "spignos.route.chain": ["demo/demo-smart", "demo/demo-fast"],
    }

    failed, answered = spans["chat demo/demo-smart"], spans["chat demo/demo-fast"]
    assert (failed.parent_id, failed.kind) == (server.span_id, "CLIENT")
    assert (failed.status, failed.status_message) == ("ERROR", "upstream_error")
    assert failed.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "demo",
        "gen_ai.request.model": "demo-smart",
        "spignos.model": "demo/demo-smart",
        "spignos.attempt": 1,
        "spignos.fallback": False,
        "spignos.stream": False,
        "spignos.outcome": "error",
        "spignos.error.retryable": True,
        "spignos.error.status_code": 503,
        "error.type": "upstream_error",
    }
    assert (answered.parent_id, answered.kind, answered.status) == (server.span_id, "CLIENT", "UNSET")
    assert answered.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "demo",
        "gen_ai.request.model": "demo-fast",
        "spignos.model": "demo/demo-fast",
        "spignos.attempt": 2,
        "spignos.fallback": True,
        "spignos.stream": False,
        "spignos.outcome": "ok",
        "gen_ai.usage.input_tokens": count_message_tokens([{"role": "user", "content": prompt}]),
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.response.finish_reasons": ["length"],
    }
    # Neither the prompt nor the answer, nor the key, is in any span.
    assert not [v for v in strings_in(list(spans.values())) if prompt in v or output in v or raw in v]


def test_a_stream_the_client_leaves_ends_its_attempt_span_as_cancelled(
    traced_gateway: Gateway, fake: Fake, collector: Collector
) -> None:
    import urllib.request

    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-fast": {"hang_after": 2}})  # two tokens, then the upstream goes quiet
    request = urllib.request.Request(
        traced_gateway.url + "/api/v1/generate",
        data=json.dumps({"prompt": "hi", "max_tokens": 8, "stream": True}).encode(),
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json", "X-Request-ID": "trace-gone"},
    )
    response = urllib.request.urlopen(request, timeout=10)
    chunks = 0
    while chunks < 2:
        chunks += response.readline().startswith(b"data: ")
    response.close()

    assert wait_until(lambda: server_span(collector, "trace-gone") is not None, timeout=20)
    server = server_span(collector, "trace-gone")
    assert server is not None
    spans = {span.name: span for span in collector.trace(server.trace_id)}
    assert sorted(spans) == ["POST /api/v1/generate", "chat demo/demo-fast", "gateway.route"]
    attempt = spans["chat demo/demo-fast"]
    assert (attempt.parent_id, attempt.status) == (server.span_id, "UNSET")
    assert (attempt.attributes["spignos.outcome"], attempt.attributes["spignos.stream"]) == ("cancelled", True)
    assert "gen_ai.usage.output_tokens" not in attempt.attributes


def test_an_unmatched_path_is_named_by_its_method_alone(traced_gateway: Gateway, collector: Collector) -> None:
    reply = call("GET", traced_gateway.url + "/no/such/page", headers={"X-Request-ID": "trace-404"})
    assert reply.status == 404
    assert wait_until(lambda: server_span(collector, "trace-404") is not None, timeout=20)
    server = server_span(collector, "trace-404")
    assert server is not None
    assert (server.name, server.attributes["http.response.status_code"]) == ("GET", 404)
    assert "http.route" not in server.attributes
    assert [s.name for s in collector.trace(server.trace_id)] == ["GET"]


def test_a_job_runs_in_the_trace_of_the_request_that_submitted_it(
    traced_gateway: Gateway, traced_worker: Path, fake: Fake, collector: Collector
) -> None:
    fake.configure(**{"demo-fast": {"status": 503}})  # conversation: demo-fast fails, demo-smart answers
    _, raw = apikey_create(name="k")
    reply = call(
        "POST",
        traced_gateway.url + "/api/v1/generate/async",
        {"prompt": "hello there", "max_tokens": 3},
        key=raw,
        headers={"X-Request-ID": "trace-job-1"},
    )
    assert reply.status == 202, reply.text
    job_id = reply.json()["job_id"]
    assert wait_until(lambda: Job.objects.get(pk=job_id).status == "succeeded", timeout=60)

    def run_span() -> ExportedSpan | None:
        runs = [
            s for s in collector.named("run/jobs.run_generation") if s.attributes.get("messaging.message.id") == job_id
        ]
        return runs[0] if runs else None

    assert wait_until(lambda: run_span() is not None and server_span(collector, "trace-job-1") is not None, timeout=30)
    server, run = server_span(collector, "trace-job-1"), run_span()
    assert server is not None and run is not None
    assert server.name == "POST /api/v1/generate/async"
    assert run.trace_id == server.trace_id  # one trace from the request to the worker

    spans = collector.trace(server.trace_id)
    by_name = {span.name: span for span in spans}
    assert sorted(by_name) == [
        "POST /api/v1/generate/async",
        "apply_async/jobs.run_generation",
        "chat demo/demo-fast",
        "chat demo/demo-smart",
        "gateway.route",
        "run/jobs.run_generation",
    ]
    assert len(spans) == 6
    publish = by_name["apply_async/jobs.run_generation"]
    assert (publish.kind, publish.parent_id, publish.service) == ("PRODUCER", server.span_id, "spignosapi-web")
    assert (run.kind, run.parent_id, run.service) == ("CONSUMER", publish.span_id, "spignosapi-worker")
    for name in ("gateway.route", "chat demo/demo-fast", "chat demo/demo-smart"):
        assert (by_name[name].parent_id, by_name[name].service) == (run.span_id, "spignosapi-worker"), name
    assert by_name["gateway.route"].attributes["spignos.request_id"] == f"job-{job_id}"
    assert by_name["gateway.route"].attributes["spignos.route.chain"] == ["demo/demo-fast", "demo/demo-smart"]
    failed, answered = by_name["chat demo/demo-fast"], by_name["chat demo/demo-smart"]
    assert [failed.attributes[k] for k in ("spignos.attempt", "spignos.outcome", "error.type", "spignos.stream")] == [
        1,
        "error",
        "upstream_error",
        True,
    ]
    assert [
        answered.attributes[k]
        for k in ("spignos.attempt", "spignos.fallback", "spignos.outcome", "gen_ai.usage.output_tokens")
    ] == [2, True, "ok", 3]

    # The worker's log records of the job carry its trace and its span (JSON lines on stderr).
    def finished_record() -> dict[str, Any] | None:
        for line in traced_worker.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("job_id") == job_id and "succeeded in" in record["message"]:
                    return dict(record)
        return None

    assert wait_until(lambda: finished_record() is not None, timeout=20)
    record = finished_record()
    assert record is not None
    assert (record["request_id"], record["trace_id"], record["span_id"]) == ("trace-job-1", run.trace_id, run.span_id)
