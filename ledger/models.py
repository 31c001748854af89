"""The usage ledger: one record per gateway request, and the daily roll-ups counted from the records.

A record copies how its call was accounted (prices, energy coefficient, grid intensity as they were then):
published values change, history must not. The records are written off the request path (``ledger.buffer``,
``ledger.writer``); the roll-ups are updated right after the records they count (``ledger.rollups``), so the
energy summary reads whole days without scanning records.
"""

from __future__ import annotations

from django.db import models

# The summed columns of the daily roll-ups, in the order the summary API and its CSV show them.
MEASURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "energy_wh",
    "energy_wh_low",
    "energy_wh_high",
    "co2e_g",
    "co2e_g_low",
    "co2e_g_high",
    "cost_usd",
    "estimated_requests",
)


class UsageRecord(models.Model):
    """One gateway request: who, how it was routed, every attempt, tokens, time, cost and energy."""

    request_id = models.CharField(max_length=128, db_index=True)
    # No database constraint: a usage row written just after its key was deleted must not be lost.
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    user_id = models.CharField(max_length=200, blank=True, db_index=True)
    endpoint = models.CharField(max_length=40)
    category = models.CharField(max_length=50, blank=True)
    route_mode = models.CharField(max_length=20, blank=True)
    model = models.CharField(max_length=260, blank=True, db_index=True, help_text="The model that answered.")
    provider = models.CharField(max_length=50, blank=True, db_index=True)
    attempts = models.JSONField(default=list)
    status = models.CharField(max_length=20, default="ok")
    error_code = models.CharField(max_length=60, blank=True)
    stream = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(default=0)
    tokens_per_sec = models.FloatField(
        null=True, blank=True, help_text="Output tokens after the first one per second; empty when not streamed."
    )
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    energy_wh = models.FloatField(default=0)
    co2e_g = models.FloatField(default=0)
    # The energy coefficient used, copied as it was then: published values change, history must not.
    energy_kwh_per_m = models.FloatField(
        null=True, blank=True, help_text="Output (or all-token) coefficient used, kWh/M, central, facility scope."
    )
    energy_input_kwh_per_m = models.FloatField(null=True, blank=True, help_text="Input coefficient used, if any.")
    energy_coefficient_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The energy coefficient row used; empty for a model setting or an estimate."
    )
    energy_estimated = models.BooleanField(default=False, help_text="Energy estimated from the model's size.")
    energy_wh_low = models.FloatField(default=0)
    energy_wh_high = models.FloatField(default=0)
    co2e_g_low = models.FloatField(default=0)
    co2e_g_high = models.FloatField(default=0)
    grid_g_co2e_per_kwh = models.FloatField(null=True, blank=True, help_text="Grid carbon intensity used.")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        # The table it had in the routing app: moving the model moved no row (migration ledger 0001).
        db_table = "routing_usagerecord"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["api_key", "created_at"])]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status}"


class UsageTotals(models.Model):
    """The measures both roll-ups sum."""

    day = models.DateField()
    # 0 = no key (a dashboard user's job): a real value keeps the unique constraint usable (NULLs never conflict).
    api_key_id = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    energy_wh = models.FloatField(default=0)
    energy_wh_low = models.FloatField(default=0)
    energy_wh_high = models.FloatField(default=0)
    co2e_g = models.FloatField(default=0)
    co2e_g_low = models.FloatField(default=0)
    co2e_g_high = models.FloatField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=8, default=0)
    estimated_requests = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class UsageDaily(UsageTotals):
    """Usage per UTC day, key and model: what the summary by model, provider, key and day reads."""

    model = models.CharField(max_length=260, blank=True)
    provider = models.CharField(max_length=50, blank=True)

    class Meta:
        db_table = "energy_usagedaily"  # the table it had in the energy app (migration ledger 0001)
        verbose_name = "daily usage (by model)"
        verbose_name_plural = "daily usage (by model)"
        constraints = [
            models.UniqueConstraint(fields=["day", "api_key_id", "model", "provider"], name="energy_daily_unique")
        ]
        indexes = [models.Index(fields=["api_key_id", "day"], name="energy_daily_key_day")]


class UsageDailyByUser(UsageTotals):
    """Usage per UTC day, key and end user (``user_id``): what the summary by user reads."""

    user_id = models.CharField(max_length=200, blank=True)

    class Meta:
        db_table = "energy_usagedailybyuser"  # the table it had in the energy app (migration ledger 0001)
        verbose_name = "daily usage (by user)"
        verbose_name_plural = "daily usage (by user)"
        constraints = [
            models.UniqueConstraint(fields=["day", "api_key_id", "user_id"], name="energy_daily_user_unique")
        ]
        indexes = [models.Index(fields=["api_key_id", "day"], name="energy_daily_user_key_day")]
