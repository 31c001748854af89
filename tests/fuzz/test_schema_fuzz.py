"""Schemathesis against the platform's own OpenAPI schema, over real HTTP, with a valid staff key.

Every operation of ``/api/schema/`` gets generated requests (valid and invalid ones): none may answer 5xx,
every response must match what the schema documents, and every error must be the platform's JSON envelope
(``hooks.py``). The example count is bounded so that it runs in ``make test``; ``FUZZ_EXAMPLES`` raises it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from accounts.services import apikey_create
from tests.fixtures import Fake, Gateway, _stop, start_gateway
from tests.helpers import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "20")


@pytest.fixture
def fuzz_server(django_db_setup: None, seeded: Fake, celery_worker: subprocess.Popen[bytes]) -> Iterator[Gateway]:
    # The fuzzer reads the streams of the jobs it submitted (it reuses their ids): a real worker runs them.
    # Embeddings go through the fake upstream: the in-process model (tested in rag/tests) would spend
    # seconds of CPU on each of the fuzzer's long inputs.
    server = start_gateway(
        {"EMBEDDINGS_DEFAULT_MODEL": "demo/demo-embed", "ROUTING_EMBEDDING_MODEL": "demo/demo-embed"}
    )
    try:
        yield server
    finally:
        _stop(server.proc)


def test_the_schema_is_valid_and_complete() -> None:
    result = subprocess.run(
        [
            str(ROOT / ".venv/bin/python"),
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            os.devnull,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_no_operation_answers_5xx_or_breaks_its_schema_or_the_envelope(fuzz_server: Gateway, tmp_path: object) -> None:
    _, key = apikey_create(name="fuzz", is_staff=True, rpm_limit=1_000_000, tpm_limit=1_000_000_000)
    result = subprocess.run(
        [
            str(ROOT / ".venv/bin/schemathesis"),
            "run",
            fuzz_server.url + "/api/schema/",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,error_envelope",
            "--max-examples",
            EXAMPLES,
            "--generation-deterministic",
            "--request-timeout",
            os.environ.get("FUZZ_TIMEOUT", "30"),
            "--workers",
            "2",
            "--phases",
            os.environ.get("FUZZ_PHASES", "examples,coverage,fuzzing"),
            "--no-color",
            *os.environ.get("FUZZ_ARGS", "").split(),  # e.g. "--report ndjson" to study a run
        ],
        cwd=ROOT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
