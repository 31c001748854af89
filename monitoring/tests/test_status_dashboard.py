"""``manage.py status_dashboard`` reads the public status API of a running server and prints a table."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from monitoring.services import stats_refresh
from tests.fixtures import Fake, Gateway
from tests.helpers import free_port

from .factories import demo, make_probe

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("status_dashboard", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_prints_the_platform_status_and_a_row_per_model(gateway: Gateway, monitored: Fake) -> None:
    now = timezone.now()
    make_probe(demo("demo-fast"), now - timedelta(hours=1), status="unknown")
    make_probe(
        demo("demo-fast"),
        now,
        last=True,
        ttfb_ms=120.4,
        total_ms=900.6,
        tokens_per_sec=45.25,
        prompt_tokens=14,
        completion_tokens=16,
        energy_wh=0.0015,
    )
    make_probe(demo("demo-smart"), now, last=True, status="unknown", http_status=503)
    stats_refresh()

    out, err = run("--url", gateway.url)

    lines = out.splitlines()
    assert lines[0].startswith("Platform: partial_outage - Down: demo/demo-smart. (1/2 models operational, updated ")
    assert lines[1] == "Failed models: demo/demo-smart"
    assert lines[3].split() == [
        "MODEL",
        "STATE",
        "STATUS",
        "OK",
        "HTTP",
        "TTFB",
        "ms",
        "TOTAL",
        "ms",
        "TOK/S",
        "TOKENS",
        "ENERGY",
        "Wh",
        "AVAIL",
        "24h",
        "WHY",
    ]
    assert set(lines[4]) == {"-", " "}
    assert lines[5].split() == [
        "demo/demo-fast",
        "operational",
        "smooth",
        "yes",
        "200",
        "120",
        "901",
        "45.2",
        "30",
        "0.001500",
        "50.00%",
        "-",
    ]
    assert lines[6].split() == [
        *("demo/demo-smart", "down", "unknown", "no", "503", "-", "500", "-", "-", "-", "0.00%"),
        *("1", "consecutive", "probe", "failure:", "upstream_error", "(HTTP", "503)"),
    ]
    assert len(lines) == 7
    assert err == ""


def test_it_shows_only_the_chosen_models_and_names_unknown_ones(gateway: Gateway, monitored: Fake) -> None:
    make_probe(demo("demo-smart"), timezone.now(), last=True)

    out, err = run("--url", gateway.url, "--models", "demo/demo-smart,nope/none")

    lines = out.splitlines()
    assert lines[0].startswith("Platform: degraded - Not probed yet: demo/demo-fast. (1/2 models operational, ")
    assert [row.split()[:2] for row in lines[4:]] == [["demo/demo-smart", "operational"]]
    assert err == "nope/none: not monitored\n"


def test_it_fails_clearly_when_the_server_does_not_answer() -> None:
    with pytest.raises(CommandError, match="cannot read http://127.0.0.1:"):
        run("--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
