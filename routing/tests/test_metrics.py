"""Prometheus ``/metrics`` of a running server, after real requests."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.services import apikey_create
from llm import count_message_tokens
from routing.breaker import Breakers
from routing.models import LLMModel
from tests.fixtures import Fake, Gateway
from tests.http import call

pytestmark = pytest.mark.django_db(transaction=True)

FAST_OK = 'spignos_requests_total{endpoint="generate",model="demo/demo-fast",status="ok"}'


def scrape(gateway: Gateway) -> str:
    reply = call("GET", gateway.url + "/metrics")  # no key: Prometheus scrapes it as is
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return reply.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def generate(gateway: Gateway, prompt: str, max_tokens: int = 4) -> int:
    _, raw = apikey_create(name="k")
    return call("POST", gateway.url + "/api/v1/generate", {"prompt": prompt, "max_tokens": max_tokens}, key=raw).status


def test_it_counts_requests_and_tokens_per_model(gateway: Gateway) -> None:
    before = scrape(gateway)  # the server lives for the whole session: compare with what it had
    assert [generate(gateway, "hello") for _ in range(2)] == [200, 200]
    after = scrape(gateway)

    count = sample(after, "spignos_requests_total", endpoint="generate", model="demo/demo-fast", status="ok")
    assert (
        count - sample(before, "spignos_requests_total", endpoint="generate", model="demo/demo-fast", status="ok") == 2
    )
    assert f"{FAST_OK} {count}\n" in after  # the exact exposition line

    prompt_tokens = count_message_tokens([{"role": "user", "content": "hello"}])
    for kind, tokens in (("prompt", prompt_tokens), ("completion", 4)):
        delta = sample(after, "spignos_tokens_total", model="demo/demo-fast", kind=kind) - sample(
            before, "spignos_tokens_total", model="demo/demo-fast", kind=kind
        )
        assert delta == 2 * tokens, kind
    latency = sample(after, "spignos_request_latency_seconds_count", endpoint="generate") - sample(
        before, "spignos_request_latency_seconds_count", endpoint="generate"
    )
    assert latency == 2
    # demo-fast: $0.10 in, $0.40 out per million tokens.
    cost = sample(after, "spignos_cost_usd_total", model="demo/demo-fast") - sample(
        before, "spignos_cost_usd_total", model="demo/demo-fast"
    )
    assert cost == pytest.approx(2 * (prompt_tokens * 0.10 + 4 * 0.40) / 1e6)


def test_it_counts_fallbacks_and_failed_requests(gateway: Gateway, fake: Fake) -> None:
    before = scrape(gateway)
    fake.configure(**{"demo-smart": {"status": 503}})
    assert generate(gateway, "explain why") == 200  # reasoning: demo-smart fails, demo-fast answers
    fake.configure(**{"*": {"status": 500}})
    assert generate(gateway, "explain why") == 502
    after = scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("spignos_requests_total", endpoint="generate", model="demo/demo-fast", status="ok") == 1
    assert delta("spignos_requests_total", endpoint="generate", model="none", status="error") == 1
    assert delta("spignos_fallbacks_total", category="reasoning", outcome="error") == 3


def test_it_exposes_each_models_breaker_state(gateway: Gateway) -> None:
    smart = LLMModel.objects.get(provider__name="demo", name="demo-smart")
    assert sample(scrape(gateway), "spignos_breaker_state", model="demo/demo-smart") == 0
    for _ in range(3):
        Breakers(threshold=3, open_seconds=300).record_failure(smart.pk, "timeout: slow")
    text = scrape(gateway)
    assert sample(text, "spignos_breaker_state", model="demo/demo-smart") == 2
    assert sample(text, "spignos_breaker_state", model="demo/demo-fast") == 0
    assert "# TYPE spignos_breaker_state gauge" in text


def test_the_queue_depth_of_each_queue_is_exposed(seeded: Fake) -> None:
    from tests.fixtures import _stop, start_gateway
    from tests.helpers import private_redis

    # A broker no worker consumes: the two high-priority jobs submitted stay queued.
    with private_redis() as (broker, _):
        server = start_gateway({"CELERY_BROKER_URL": broker})
        try:
            assert [sample(scrape(server), "spignos_queue_depth", queue=q) for q in ("high", "default", "low")] == [
                0.0,
                0.0,
                0.0,
            ]
            _, raw = apikey_create(name="k")
            for _ in range(2):
                reply = call("POST", server.url + "/api/v1/generate/async", {"prompt": "hi", "priority": 9}, key=raw)
                assert reply.status == 202, reply.text
            text = scrape(server)
            assert [sample(text, "spignos_queue_depth", queue=q) for q in ("high", "default", "low")] == [2.0, 0.0, 0.0]
        finally:
            _stop(server.proc)


def test_the_grafana_dashboard_only_queries_metrics_the_platform_exposes(gateway: Gateway, fake: Fake) -> None:
    import json
    import re

    import yaml

    from tests.helpers import ROOT

    fake.configure(**{"demo-smart": {"status": 503}})  # a fallback, so that every series has a sample
    assert (
        call(
            "POST",
            gateway.url + "/api/v1/generate",
            {"prompt": "Fix this python bug", "stream": True},
            key=apikey_create(name="k")[1],
        ).status
        == 200
    )
    exposed = {s.name for family in text_string_to_metric_families(scrape(gateway)) for s in family.samples}

    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/spignosapi.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bspignos_[a-z_]+", target["expr"])
    }
    assert queried == {
        "spignos_requests_total",
        "spignos_request_latency_seconds_bucket",
        "spignos_ttft_seconds_bucket",
        "spignos_tokens_total",
        "spignos_cost_usd_total",
        "spignos_energy_wh_total",
        "spignos_fallbacks_total",
        "spignos_breaker_state",
        "spignos_queue_depth",
    }
    assert queried <= exposed, queried - exposed
    # The panels use the provisioned data source, which points at the compose service Prometheus runs as.
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {source["uid"]}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    scrape_config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"][0]
    assert (scrape_config["metrics_path"], scrape_config["static_configs"][0]["targets"]) == ("/metrics", ["web:8000"])
