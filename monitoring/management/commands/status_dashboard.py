"""``manage.py status_dashboard [--models a,b] [--url URL]``: a terminal table from the public status API.

It reads ``GET /api/v1/platform-status`` and, per model, ``?model=<id>`` over HTTP, so it shows what any
client of the status page sees. The models are ``--models`` or, by default, the monitored models of the
database this command is configured with.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

COLUMNS = (
    "MODEL",
    "STATE",
    "STATUS",
    "OK",
    "HTTP",
    "TTFB ms",
    "TOTAL ms",
    "TOK/S",
    "TOKENS",
    "ENERGY Wh",
    "AVAIL 24h",
    "WHY",
)


def _fetch(url: str, timeout: float) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read().decode())
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read().decode())
        except ValueError:
            return error.code, None
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read {url}: {error}") from None


def _number(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(body: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(body["model"]),
        str(body["state"]),
        str(body["status"]),
        "yes" if body["ok"] else "no",
        "-" if body["http_status"] is None else str(body["http_status"]),
        _number(body["ttfb_ms"], 0),
        _number(body["total_ms"], 0),
        _number(body["tokens_per_sec"], 1),
        "-" if body["usage"]["total_tokens"] is None else str(body["usage"]["total_tokens"]),
        _number(body["energy_wh"], 6),
        "-" if body["availability"]["24h"] is None else f"{body['availability']['24h']:.2f}%",
        # Why a model is not operational ("3 consecutive probe failures: timeout"); nothing to say otherwise.
        "-" if body["state"] == "operational" else str(body["state_reason"]),
    )


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(cells[i]) for cells in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip() for cells in [COLUMNS, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


class Command(BaseCommand):
    help = "Print the platform status and per-model metrics (TTFB, tokens/s, energy) from the status API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--models", default="", help="Comma-separated model ids (default: every monitored one).")
        parser.add_argument("--url", default="", help="Base URL of the platform (default: http://127.0.0.1:$PORT).")
        parser.add_argument("--timeout", type=float, default=10.0, help="Seconds to wait for each request.")

    def handle(self, *args: Any, **options: Any) -> None:
        base = (options["url"] or f"http://127.0.0.1:{settings.PORT}").rstrip("/")
        endpoint = f"{base}/api/v1/platform-status"
        timeout = options["timeout"]
        status, platform = _fetch(endpoint, timeout)
        if status != 200 or not isinstance(platform, dict):
            raise CommandError(f"{endpoint} answered HTTP {status}")
        stats = platform["stats"]
        self.stdout.write(
            f"Platform: {platform['status']} - {platform['message']} "
            f"({stats['operational_models']}/{stats['total_models']} models operational, "
            f"updated {platform['updated_at']})"
        )
        if platform["failed_models"]:
            self.stdout.write(f"Failed models: {', '.join(platform['failed_models'])}")
        rows = []
        missing = []
        for model_id in self._models(options["models"]):
            status, body = _fetch(f"{endpoint}?{urllib.parse.urlencode({'model': model_id})}", timeout)
            if status == 200 and isinstance(body, dict):
                rows.append(_row(body))
            else:
                missing.append(model_id)
        if rows:
            self.stdout.write("")
            for line in table(rows):
                self.stdout.write(line)
        for model_id in missing:
            self.stderr.write(f"{model_id}: not monitored")

    def _models(self, wanted: str) -> list[str]:
        if wanted:
            return [m.strip() for m in wanted.split(",") if m.strip()]
        from monitoring.selectors import monitored_rows

        return [row.model_id for row in monitored_rows()]
