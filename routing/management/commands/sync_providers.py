"""``sync_providers FILE.yaml [--prune] [--dry-run]``: providers, models, prices, energy and categories from YAML.

The schema is the contract's section 5. Idempotent; what the file does not mention is left alone unless
``--prune`` (built-in categories are never pruned). All or nothing: one invalid entry and nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.services import SyncError, providers_sync


class Command(BaseCommand):
    help = "Create or update providers, models (prices, energy) and categories from a YAML file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the YAML file: providers (with their models) and categories")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="delete providers, their models and custom categories that the file does not mention",
        )
        parser.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            raise CommandError(f"{path}: not valid YAML: {exc}") from None
        try:
            report = providers_sync(document=document, prune=options["prune"], dry_run=options["dry_run"])
        except SyncError as exc:
            problems = "\n".join(f"  - {error}" for error in exc.errors)
            raise CommandError(f"{path}: {len(exc.errors)} problem(s), nothing was written:\n{problems}") from None
        prefix = "(dry run, nothing written) " if options["dry_run"] else ""
        for line in report.lines():
            self.stdout.write(prefix + line)
        for deleted in report.deleted:
            self.stdout.write(f"{prefix}deleted {deleted}")
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
