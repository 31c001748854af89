"""Two worker processes share one breaker per model and one set of limits (PostgreSQL and Redis, not memory).

A gateway and two Celery workers of this module's own on a private broker (a throwaway redis-server), so
the session's worker takes none of these jobs; cache and channel layer are the tests' Redis. Worker A
consumes only the ``high`` queue and worker B only ``low``: a job's priority says which one runs it, and
each worker's log names the jobs it ran.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.services import apikey_create
from jobs.models import Job
from llm import count_message_tokens
from routing.models import CircuitBreaker, LLMModel
from routing.services import routing_changed
from tests.fixtures import Fake, Gateway, _stop, start_gateway, start_worker, stop_group
from tests.helpers import private_redis, wait_until
from tests.http import call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

HIGH, LOW = 9, -9  # priorities: queue high (worker A), queue low (worker B)
PROMPT = "explain why"  # the reasoning chain: demo-smart, then demo-fast


class Worker:
    def __init__(self, name: str, queue: str, broker_url: str, log: Path) -> None:
        self.name, self.log = name, log
        self.proc = start_worker(name=name, log=log, broker_url=broker_url, queues=queue)

    def ran(self) -> set[str]:
        """The ids of the jobs this worker ran to the end (the task id is the job id)."""
        text = self.log.read_text(errors="replace")
        return set(re.findall(r"Task jobs\.run_generation\[([0-9a-f-]{36})\] succeeded", text))


@pytest.fixture(scope="module")
def cluster(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Worker, Worker]]:
    logs = tmp_path_factory.mktemp("two-workers")
    with private_redis() as (broker_url, _):
        server = start_gateway({"CELERY_BROKER_URL": broker_url}, log=logs / "gateway.log")
        a = Worker("worker-a", "high", broker_url, logs / "a.log")
        b = Worker("worker-b", "low", broker_url, logs / "b.log")
        try:
            assert wait_until(lambda: "ready." in a.log.read_text() and "ready." in b.log.read_text(), timeout=60)
            yield server, a, b
        finally:
            for worker in (a, b):
                stop_group(worker.proc)
            _stop(server.proc)


@pytest.fixture
def workers(cluster: tuple[Gateway, Worker, Worker], seeded: Fake) -> tuple[Gateway, Worker, Worker]:
    return cluster


def run(gateway: Gateway, raw: str, priority: int, **body: Any) -> Job:
    """Submit a job and wait for it to finish."""
    reply = call(
        "POST",
        gateway.url + "/api/v1/generate/async",
        {"prompt": PROMPT, "max_tokens": 5, "priority": priority, **body},
        key=raw,
    )
    assert reply.status == 202, reply.text
    job_id = reply.json()["job_id"]
    assert wait_until(lambda: Job.objects.get(pk=job_id).finished_at is not None, timeout=60)
    return Job.objects.get(pk=job_id)


def outcomes(job: Job) -> list[tuple[str, str]]:
    assert job.meta is not None, job.error
    return [(a["model"], a["outcome"]) for a in job.meta["attempts"]]


def test_a_breaker_opened_by_one_worker_is_honoured_by_the_other(
    workers: tuple[Gateway, Worker, Worker], fake: Fake
) -> None:
    gateway, a, b = workers
    _, raw = apikey_create(name="k")
    fake.configure(**{"demo-smart": {"status": 500}})

    on_a = [run(gateway, raw, HIGH) for _ in range(3)]  # three failures of demo-smart open its breaker
    on_b = [run(gateway, raw, LOW) for _ in range(2)]

    assert [outcomes(job) for job in on_a] == [[("demo/demo-smart", "error"), ("demo/demo-fast", "ok")]] * 3
    assert [outcomes(job) for job in on_b] == [[("demo/demo-smart", "skipped_open"), ("demo/demo-fast", "ok")]] * 2
    assert all(job.status == "succeeded" for job in on_a + on_b)
    assert CircuitBreaker.objects.get(model__name="demo-smart").state == "open"
    assert fake.stats()["requests"] == {"demo-smart": 3, "demo-fast": 5}  # worker B never called it
    assert wait_until(lambda: a.ran() >= {str(j.pk) for j in on_a} and b.ran() >= {str(j.pk) for j in on_b})
    assert not a.ran() & {str(j.pk) for j in on_b} and not b.ran() & {str(j.pk) for j in on_a}


def test_a_models_outbound_budget_is_spent_by_both_workers_together(
    workers: tuple[Gateway, Worker, Worker], fake: Fake
) -> None:
    gateway, a, b = workers
    LLMModel.objects.filter(provider__name="demo", name="demo-smart").update(rpm_budget=2)
    routing_changed()
    _, raw = apikey_create(name="k")

    first, second, third = run(gateway, raw, HIGH), run(gateway, raw, LOW), run(gateway, raw, HIGH)

    assert outcomes(first) == outcomes(second) == [("demo/demo-smart", "ok")]
    assert outcomes(third) == [("demo/demo-smart", "skipped_budget"), ("demo/demo-fast", "ok")]
    assert wait_until(lambda: {str(first.pk), str(third.pk)} <= a.ran() and str(second.pk) in b.ran())


def test_a_keys_tokens_per_minute_count_what_both_workers_produced(
    workers: tuple[Gateway, Worker, Worker], fake: Fake
) -> None:
    gateway, a, b = workers
    fake.configure(**{"demo-smart": {"tokens": 50}})
    prompt = count_message_tokens([{"role": "user", "content": PROMPT}])
    # Room for two jobs' prompts and completions and one more prompt, less a token: the third job is
    # refused only if the completions of both (booked by the worker that ran each) were counted.
    key, raw = apikey_create(name="k", tpm_limit=2 * (prompt + 50) + prompt - 1)
    if time.time() % 60 > 40:  # the tokens are counted per minute: start in a fresh one
        time.sleep(61 - time.time() % 60)

    on_a, on_b = run(gateway, raw, HIGH, max_tokens=50), run(gateway, raw, LOW, max_tokens=50)
    assert [job.meta["completion_tokens"] for job in (on_a, on_b) if job.meta] == [50, 50]
    assert wait_until(lambda: str(on_a.pk) in a.ran() and str(on_b.pk) in b.ran())

    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": PROMPT, "max_tokens": 1}, key=raw)
    assert reply.status == 429, reply.text
    assert reply.json()["error"]["code"] == "tpm_limit_exceeded"
    assert Job.objects.filter(api_key=key).count() == 2
