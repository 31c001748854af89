"""``createapikey NAME [--rpm N] [--tpm N] [--staff] [--team T] [--budget-usd X] [--budget-wh X]
[--budget-co2e-g X] [--budget-period day|week|month|total]``: the raw key alone on the last line of stdout."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

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
        _budget_arguments(parser)

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
        budgets = _budget_limits(options)
        with transaction.atomic():  # the key and its budgets, or nothing
            key, raw = apikey_create(
                name=options["name"],
                is_staff=options["staff"],
                rpm_limit=options["rpm"],
                tpm_limit=options["tpm"],
                team=team,
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
