"""``energy_rollups --rebuild``: recount the daily usage roll-ups from the usage records.

The roll-ups are kept up to date as records are written; rebuild them after importing records by other
means, or if a process died between writing records and counting them. Run it while nothing writes usage.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.rollups import usage_rollups_rebuild


class Command(BaseCommand):
    help = "Rebuild the daily usage roll-ups that GET /api/v1/energy/summary reads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="recount every roll-up from the usage records")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["rebuild"]:
            raise CommandError("nothing to do: pass --rebuild")
        by_model, by_user = usage_rollups_rebuild()
        self.stdout.write(f"rebuilt: {by_model} daily rows by model, {by_user} by user")
