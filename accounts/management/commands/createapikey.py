"""``createapikey NAME [--rpm N] [--tpm N] [--staff]``: the raw key alone on the last line of stdout."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.services import apikey_create


class Command(BaseCommand):
    help = "Create an API key and print it (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--rpm", type=int, default=None, help="requests per minute")
        parser.add_argument("--tpm", type=int, default=None, help="tokens per minute")
        parser.add_argument("--staff", action="store_true", help="may call the staff endpoints")

    def handle(self, *args: Any, **options: Any) -> None:
        for flag in ("rpm", "tpm"):
            if options[flag] is not None and options[flag] < 1:
                from django.core.management.base import CommandError

                raise CommandError(f"--{flag} must be a positive integer")
        key, raw = apikey_create(
            name=options["name"], is_staff=options["staff"], rpm_limit=options["rpm"], tpm_limit=options["tpm"]
        )
        self.stderr.write(f"Created API key {key.name!r} ({key.prefix}…), staff={key.is_staff}.")
        self.stdout.write(raw)
