"""A worker's JSON log records carry the job id and the id of the request that submitted the job; and
without an OTLP endpoint neither the server nor the worker imports any of the tracing SDK.

The gateway and the worker here share a private broker (no other worker takes these jobs) and run with
Python's import log on (``PYTHONPROFILEIMPORTTIME``): every module either process imports, at start-up or
later while serving, is listed on its stderr.
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
from tests.fixtures import Fake, Gateway, _stop, start_gateway, start_worker, stop_group
from tests.helpers import private_redis, wait_until
from tests.http import call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# Tracing variables that are present but name no endpoint (as .env.example leaves them): tracing stays off.
NO_ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_SERVICE_NAME": "spignos-test", "PYTHONPROFILEIMPORTTIME": "1"}
TRACING_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    with private_redis() as (url, _):
        yield url


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def gateway_server(django_db_setup: None, broker_url: str, logs_dir: Path) -> Iterator[Gateway]:
    server = start_gateway({"CELERY_BROKER_URL": broker_url, **NO_ENDPOINT}, log=logs_dir / "gateway.log")
    try:
        yield server
    finally:
        _stop(server.proc)


@pytest.fixture(scope="module")
def worker_log(gateway_server: Gateway, broker_url: str, logs_dir: Path) -> Iterator[Path]:
    """A worker logging JSON at INFO; its stdout and stderr go to the file yielded."""
    log = logs_dir / "worker.log"
    proc = start_worker(
        name=f"logs-{uuid.uuid4().hex[:8]}", log=log, broker_url=broker_url, env={"LOG_FORMAT": "json", **NO_ENDPOINT}
    )
    try:
        yield log
    finally:
        stop_group(proc)


@pytest.fixture
def gateway(gateway_server: Gateway, seeded: Fake) -> Gateway:
    return gateway_server


def records(log: Path) -> list[dict[str, Any]]:
    """The JSON log records of the file (the import log's lines are not JSON)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def submit(gateway: Gateway, request_id: str, **body: Any) -> str:
    _, raw = apikey_create(name="k")
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate/async",
        {"prompt": "hello there", **body},
        key=raw,
        headers={"X-Request-ID": request_id},
    )
    assert reply.status == 202, reply.text
    assert reply.headers["x-request-id"] == request_id
    return str(reply.json()["job_id"])


def wait_for_job(job_id: str, status: str) -> Job:
    assert wait_until(lambda: Job.objects.get(pk=job_id).status == status, timeout=60), Job.objects.filter(
        pk=job_id
    ).values("status", "deliveries", "error")[0]
    return Job.objects.get(pk=job_id)


def of_job(log: Path, job_id: str) -> list[dict[str, Any]]:
    return [r for r in records(log) if r.get("job_id") == job_id]


def test_a_failing_jobs_records_carry_its_id_and_the_id_of_the_request_that_submitted_it(
    gateway: Gateway, fake: Fake, worker_log: Path
) -> None:
    fake.configure(**{"*": {"status": 400}})  # the upstream refuses: final, no retry
    job_id = submit(gateway, "logs-submit-1", max_tokens=3)
    wait_for_job(job_id, "failed")
    assert wait_until(lambda: any("succeeded in" in r["message"] for r in of_job(worker_log, job_id)), timeout=20)

    mine = of_job(worker_log, job_id)
    assert [(r["level"], r["logger"], r["message"]) for r in mine if r["logger"] == "jobs.services"] == [
        ("WARNING", "jobs.services", "job failed: upstream_bad_request")
    ]
    finished = [r for r in mine if r["logger"] == "celery.app.trace"]
    assert len(finished) == 1 and finished[0]["message"].startswith(f"Task jobs.run_generation[{job_id}] succeeded in")
    assert {(r["job_id"], r["request_id"]) for r in mine} == {(job_id, "logs-submit-1")}
    # Outside a task a record has neither id (the worker's start-up, for one).
    ready = [r for r in records(worker_log) if r["message"].endswith(" ready.")]
    assert len(ready) == 1 and ready[0]["request_id"] is None and "job_id" not in ready[0]
    assert "trace_id" not in ready[0] and all("trace_id" not in r for r in mine)  # tracing is off


def test_a_retried_job_keeps_both_ids_on_its_next_delivery(gateway: Gateway, fake: Fake, worker_log: Path) -> None:
    # Both models of the chain fail once (retryable): the task is retried, and the second delivery answers.
    fake.configure(**{"*": {"fail_first": 1, "status": 503}})
    job_id = submit(gateway, "logs-submit-2", max_tokens=3)
    assert wait_for_job(job_id, "succeeded").deliveries == 2
    assert wait_until(lambda: any("succeeded in" in r["message"] for r in of_job(worker_log, job_id)), timeout=20)

    mine = of_job(worker_log, job_id)
    trace_messages = [r["message"] for r in mine if r["logger"] == "celery.app.trace"]
    assert len(trace_messages) == 2
    assert trace_messages[0].startswith(f"Task jobs.run_generation[{job_id}] retry: Retry in ")
    assert trace_messages[1].startswith(f"Task jobs.run_generation[{job_id}] succeeded in ")
    assert {(r["job_id"], r["request_id"]) for r in mine} == {(job_id, "logs-submit-2")}


def test_without_an_endpoint_no_process_imports_the_tracing_sdk(
    gateway: Gateway, worker_log: Path, logs_dir: Path
) -> None:
    _, raw = apikey_create(name="k")
    assert call("POST", gateway.url + "/api/v1/generate", {"prompt": "hi", "max_tokens": 2}, key=raw).status == 200
    job_id = submit(gateway, "untraced-1", max_tokens=2)
    wait_for_job(job_id, "succeeded")
    assert wait_until(lambda: any("succeeded in" in r["message"] for r in of_job(worker_log, job_id)), timeout=20)

    for log in (logs_dir / "gateway.log", worker_log):
        imported = [
            line.rsplit("|", 1)[1].strip() for line in log.read_text().splitlines() if line.startswith("import time:")
        ]
        # The log is the process's: it lists the gateway path's modules (those that would import the SDK).
        assert {"routing.gateway", "routing.spans", "spignosapi.tracing"} <= set(imported), log.name
        assert [m for m in imported if m.startswith(TRACING_MODULES)] == [], log.name
