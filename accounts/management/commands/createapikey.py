"""``createapikey NAME [--rpm N] [--tpm N] [--staff] [--team T] [--models P,…] [--expires ISO8601] [--tags T,…]
[--max-parallel N]``: the raw key alone on the last line of stdout."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Team, validate_model_patterns, validate_tags
from accounts.services import apikey_create


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class Command(BaseCommand):
    help = "Create an API key and print it (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--rpm", type=int, default=None, help="requests per minute")
        parser.add_argument("--tpm", type=int, default=None, help="tokens per minute")
        parser.add_argument("--max-parallel", type=int, default=None, help="requests under way at once")
        parser.add_argument("--staff", action="store_true", help="may call the staff endpoints")
        parser.add_argument("--team", default=None, help="an existing team (created in the admin or the API)")
        parser.add_argument(
            "--models", default=None, help="allowed models, comma-separated: ids, globs (openai/*) or categories"
        )
        parser.add_argument("--expires", default=None, help="when the key stops working (ISO 8601)")
        parser.add_argument("--tags", default=None, help="labels, comma-separated")

    def handle(self, *args: Any, **options: Any) -> None:
        for flag in ("rpm", "tpm", "max_parallel"):
            if options[flag] is not None and options[flag] < 1:
                raise CommandError(f"--{flag.replace('_', '-')} must be a positive integer")
        team = None
        if options["team"] is not None:
            # An unknown team is refused, not created: a typo would otherwise make a new team of one key,
            # which silently has none of the team's limits, allowed models or collections.
            team = Team.objects.filter(name=options["team"]).first()
            if team is None:
                raise CommandError(f"There is no team {options['team']!r}: create it in the admin first.")
        models, tags = _list(options["models"]), _list(options["tags"])
        for values, validate, flag in ((models, validate_model_patterns, "--models"), (tags, validate_tags, "--tags")):
            try:
                validate(values)
            except ValidationError as exc:
                raise CommandError(f"{flag}: {' '.join(exc.messages)}") from None
        expires_at = None
        if options["expires"] is not None:
            try:
                expires_at = parse_datetime(options["expires"])
            except ValueError:
                expires_at = None
            if expires_at is None:
                raise CommandError(f"--expires: {options['expires']!r} is not an ISO 8601 date and time")
            if timezone.is_naive(expires_at):
                expires_at = timezone.make_aware(expires_at, timezone.get_current_timezone())
            if expires_at <= timezone.now():
                raise CommandError("--expires must be in the future")
        key, raw = apikey_create(
            name=options["name"],
            is_staff=options["staff"],
            rpm_limit=options["rpm"],
            tpm_limit=options["tpm"],
            team=team,
            max_parallel_requests=options["max_parallel"],
            allowed_models=models,
            tags=tags,
            expires_at=expires_at,
        )
        self.stderr.write(f"Created API key {key.name!r} ({key.prefix}…), staff={key.is_staff}, team={team}.")
        self.stdout.write(raw)
