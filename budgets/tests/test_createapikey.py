"""``createapikey``'s budget flags: a budget per metric given, for the period given; bad amounts refused."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiKey
from budgets.models import Budget

pytestmark = pytest.mark.django_db


def test_it_creates_the_keys_budgets() -> None:
    out = StringIO()
    flags = ["--budget-usd", "50", "--budget-wh", "12.5", "--budget-co2e-g", "3", "--budget-period", "week"]
    call_command("createapikey", "metered", *flags, stdout=out, stderr=StringIO())
    key = ApiKey.objects.get()
    budgets = {(b.scope, b.metric, b.period, b.limit, b.api_key_id) for b in Budget.objects.all()}
    assert budgets == {
        ("key", "usd", "week", Decimal(50), key.pk),
        ("key", "wh", "week", Decimal("12.5"), key.pk),
        ("key", "co2e_g", "week", Decimal(3), key.pk),
    }


def test_a_budget_is_monthly_unless_told() -> None:
    call_command("createapikey", "metered", "--budget-usd", "5", stdout=StringIO(), stderr=StringIO())
    assert Budget.objects.get().period == "month"


@pytest.mark.parametrize("amount", ["-5", "0", "fifty", "NaN", "0.0000001"])
def test_it_refuses_a_bad_amount_and_creates_nothing(amount: str) -> None:
    with pytest.raises(CommandError, match="--budget-usd must be"):
        call_command("createapikey", "x", "--budget-usd", amount, stdout=StringIO(), stderr=StringIO())
    assert not ApiKey.objects.exists() and not Budget.objects.exists()
