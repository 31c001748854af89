"""``createapikey NAME [--rpm N] [--tpm N] [--staff] [--team T] [--models P,…] [--expires ISO8601] [--tags T,…]
[--max-parallel N] [--budget-usd X] [--budget-wh X] [--budget-co2e-g X] [--budget-period day|week|month|total]``:
the raw key alone on the last line of stdout."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Team, validate_model_patterns, validate_tags
from accounts.services import apikey_create


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _expires(value: str | None) -> datetime | None:
    """``--expires``: an ISO 8601 moment in the future (naive: the current time zone's), or None."""
    if value is None:
        return None
    try:
        expires_at = parse_datetime(value)
    except ValueError:
        expires_at = None
    if expires_at is None:
        raise CommandError(f"--expires: {value!r} is not an ISO 8601 date and time")
    if timezone.is_naive(expires_at):
        expires_at = timezone.make_aware(expires_at, timezone.get_current_timezone())
    if expires_at <= timezone.now():
        raise CommandError("--expires must be in the future")
    return expires_at


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
        _budget_arguments(parser)

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
        expires_at = _expires(options["expires"])
        budgets = _budget_limits(options)
        with transaction.atomic():  # the key and its budgets, or nothing
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
            _budgets_create(key, budgets, options["budget_period"])
        self.stderr.write(f"Created API key {key.name!r} ({key.prefix}…), staff={key.is_staff}, team={team}.")
        self.stdout.write(raw)


# --- the key's budgets (the budgets app) ----------------------------------------------------------------

_BUDGET_FLAGS = {"usd": "--budget-usd", "wh": "--budget-wh", "co2e_g": "--budget-co2e-g"}


def _budget_arguments(parser: CommandParser) -> None:
    parser.add_argument("--budget-usd", default=None, help="the key's budget in USD per --budget-period")
    parser.add_argument("--budget-wh", default=None, help="the key's energy budget in Wh per --budget-period")
    parser.add_argument("--budget-co2e-g", default=None, help="the key's carbon budget in gCO2e per --budget-period")
    parser.add_argument(
        "--budget-period", default="month", choices=["day", "week", "month", "total"], help="UTC (default: month)"
    )


def _budget_limits(options: dict[str, Any]) -> dict[str, Decimal]:
    """Each budget flag given, as a positive amount (checked before anything is created)."""
    limits: dict[str, Decimal] = {}
    for metric, flag in _BUDGET_FLAGS.items():
        raw = options[flag[2:].replace("-", "_")]
        if raw is None:
            continue
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise CommandError(f"{flag} must be a number, not {raw!r}") from None
        if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.000001")):
            raise CommandError(f"{flag} must be a positive amount with at most 6 decimals")
        limits[metric] = value
    return limits


def _budgets_create(key: Any, limits: dict[str, Decimal], period: str) -> None:
    # The command is an entry point, but it lives in accounts, which the layers put below the budgets app:
    # the model is found through the app registry rather than imported.
    budget = apps.get_model("budgets", "Budget")
    for metric, limit in limits.items():
        budget(scope="key", api_key=key, metric=metric, period=period, limit=limit).save()
