"""Which OTLP endpoint traces go to (if any), and the Prometheus multiprocess directory, from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from spignosapi.settings.observability import multiprocess_dir, traces_endpoint


def test_tracing_is_off_without_an_endpoint_or_with_an_empty_one() -> None:
    assert traces_endpoint({}) == ""
    assert traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": " "}) == ""
    assert traces_endpoint({"OTEL_SERVICE_NAME": "x", "OTEL_BSP_SCHEDULE_DELAY": "100"}) == ""


def test_the_base_endpoint_gets_the_traces_path_and_the_traces_endpoint_is_used_as_is() -> None:
    assert (
        traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}) == "http://collector:4318/v1/traces"
    )
    both = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/otlp/t"}
    assert traces_endpoint(both) == "https://b/otlp/t"
    # An empty traces endpoint (as .env.example leaves it) does not hide the base one.
    empty_traces = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""}
    assert traces_endpoint(empty_traces) == "http://a:4318/v1/traces"


def test_the_sdk_switches_turn_tracing_off_even_with_an_endpoint() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318"}
    assert traces_endpoint({**endpoint, "OTEL_SDK_DISABLED": "true"}) == ""
    assert traces_endpoint({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) == ""
    assert traces_endpoint({**endpoint, "OTEL_SDK_DISABLED": "false"}) == "http://a:4318/v1/traces"


def test_an_endpoint_that_is_not_an_http_url_stops_the_start_up() -> None:
    with pytest.raises(ImproperlyConfigured, match="OTEL_EXPORTER_OTLP_ENDPOINT must be the http"):
        traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"})
    with pytest.raises(ImproperlyConfigured, match="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be the http"):
        traces_endpoint({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "grpc://collector:4317"})


def test_the_multiprocess_directory_must_exist(tmp_path: Path) -> None:
    assert multiprocess_dir({}) == ""
    assert multiprocess_dir({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}) == str(tmp_path)
    with pytest.raises(ImproperlyConfigured, match="is not a directory"):
        multiprocess_dir({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing")})
