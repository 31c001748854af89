"""``createapikey NAME [--rpm N] [--tpm N] [--staff] [--team T]``: the raw key alone on the last line of stdout."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Team
from accounts.services import apikey_create


class Command(BaseCommand):
    help = "Create an API key and print it (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--rpm", type=int, default=None, help="requests per minute")
        parser.add_argument("--tpm", type=int, default=None, help="tokens per minute")
        parser.add_argument("--staff", action="store_true", help="may call the staff endpoints")
        parser.add_argument("--team", default=None, help="an existing team (created in the admin) the key belongs to")

    def handle(self, *args: Any, **options: Any) -> None:
        for flag in ("rpm", "tpm"):
            if options[flag] is not None and options[flag] < 1:
                raise CommandError(f"--{flag} must be a positive integer")
        team = None
        if options["team"] is not None:
            # An unknown team is refused, not created: a typo would otherwise make a new team of one key,
            # which silently sees none of the team's collections.
            team = Team.objects.filter(name=options["team"]).first()
            if team is None:
                raise CommandError(f"There is no team {options['team']!r}: create it in the admin first.")
        key, raw = apikey_create(
            name=options["name"],
            is_staff=options["staff"],
            rpm_limit=options["rpm"],
            tpm_limit=options["tpm"],
            team=team,
        )
        self.stderr.write(f"Created API key {key.name!r} ({key.prefix}…), staff={key.is_staff}, team={team}.")
        self.stdout.write(raw)
