"""``/metrics`` of a server running several processes (``uvicorn --workers 2``, as the Dockerfile runs it).

With ``PROMETHEUS_MULTIPROC_DIR`` each process writes its counters to files there and every scrape, whichever
process serves it, sums them all. (Without it — routing/tests/test_metrics.py — one process's counters.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.services import apikey_create
from tests.fixtures import Fake, _stop, start_gateway
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)


def total(text: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_every_scrape_counts_the_requests_of_every_web_process(seeded: Fake, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    server = start_gateway({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, workers=2)
    try:
        _, raw = apikey_create(name="k")

        def generate() -> None:
            # urllib opens a new connection for each request: either process may accept it.
            reply = call("POST", server.url + "/api/v1/generate", {"prompt": "hello", "max_tokens": 2}, key=raw)
            assert reply.status == 200, reply.text

        # Until both processes have served one (each writes its own counter file on its first request).
        sent = 0
        while len(list(metrics_dir.glob("counter_*.db"))) < 2:
            assert sent < 200, "one process served every request"
            generate()
            sent += 1
        for _ in range(5):
            generate()
        sent += 5

        for _ in range(6):  # whichever process answers the scrape
            reply = call("GET", server.url + "/metrics")
            assert reply.status == 200
            text = reply.text
            assert total(text, "spignos_requests_total") == sent
            assert total(text, "spignos_request_latency_seconds_count") == sent
            assert total(text, "spignos_tokens_total") > 0
            # The collectors computed at scrape time appear once, and no single process's own statistics.
            for family in ("spignos_breaker_state", "spignos_queue_depth", "spignos_requests_total"):
                assert text.count(f"# TYPE {family} ") == 1, family
            assert [name for name in ("process_cpu_seconds_total", "python_gc_") if name in text] == []
        assert len(list(metrics_dir.glob("counter_*.db"))) == 2
    finally:
        _stop(server.proc)
