"""Energy coefficients, versioned, with their sources (the usage records and roll-ups: ``ledger.models``).

A coefficient is never edited into a different value: a new published figure is a new row with a later
``valid_from``. Usage records copy the values they were computed with, so history never moves either way.
"""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from ledger.coefficients import BASIS_OUTPUT, BASIS_TOTAL


class EnergyCoefficient(models.Model):
    class Scope(models.TextChoices):
        GPU = "gpu", "GPU only (× PUE; the rest of the server not counted)"
        SERVER = "server", "Server / IT equipment (× PUE)"
        FACILITY = "facility", "Full facility (PUE included)"

    class Basis(models.TextChoices):
        OUTPUT = BASIS_OUTPUT, "Output tokens (input tokens with the input coefficient, if any)"
        TOTAL = BASIS_TOTAL, "All tokens, input and output, with the output coefficient"

    model = models.CharField(
        max_length=260,
        db_index=True,
        help_text='A model id "<provider>/<name>" (that model only), or a bare name such as "gpt-4o-mini" '
        "(that model at any provider).",
    )
    output_kwh_per_m_low = models.FloatField(validators=[MinValueValidator(0)], verbose_name="output kWh/M low")
    output_kwh_per_m = models.FloatField(
        validators=[MinValueValidator(0)], verbose_name="output kWh/M central", help_text="kWh per million tokens."
    )
    output_kwh_per_m_high = models.FloatField(validators=[MinValueValidator(0)], verbose_name="output kWh/M high")
    input_kwh_per_m_low = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)], verbose_name="input kWh/M low"
    )
    input_kwh_per_m = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        verbose_name="input kWh/M central",
        help_text="Optional; only with the output token basis.",
    )
    input_kwh_per_m_high = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)], verbose_name="input kWh/M high"
    )
    token_basis = models.CharField(max_length=10, choices=Basis.choices, default=Basis.OUTPUT)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.FACILITY)
    pue = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(1.0)],
        verbose_name="PUE",
        help_text="Applied to GPU and server scopes; recorded for information with the facility scope.",
    )
    estimated = models.BooleanField(
        default=False, help_text="Modelled from the parameter count (e.g. EcoLogits) rather than measured or published."
    )
    source = models.CharField(max_length=500, help_text="Who published the value, and how it was derived.")
    source_url = models.URLField(max_length=500, blank=True)
    valid_from = models.DateTimeField(default=timezone.now, db_index=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "valid_from"], name="energy_one_coefficient_per_model_and_time"),
            models.CheckConstraint(
                condition=Q(output_kwh_per_m_low__lte=F("output_kwh_per_m"))
                & Q(output_kwh_per_m__lte=F("output_kwh_per_m_high")),
                name="energy_output_low_central_high",
            ),
            models.CheckConstraint(
                condition=Q(input_kwh_per_m__isnull=True)
                | (
                    Q(input_kwh_per_m_low__lte=F("input_kwh_per_m"))
                    & Q(input_kwh_per_m__lte=F("input_kwh_per_m_high"))
                    & Q(token_basis=BASIS_OUTPUT)
                ),
                name="energy_input_low_central_high",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.output_kwh_per_m:g} kWh/M from {self.valid_from:%Y-%m-%d}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        errors: dict[str, str] = {}
        low, central, high = self.output_kwh_per_m_low, self.output_kwh_per_m, self.output_kwh_per_m_high
        if None not in (low, central, high) and not low <= central <= high:
            errors["output_kwh_per_m"] = "Expected low <= central <= high."
        low_in, central_in, high_in = self.input_kwh_per_m_low, self.input_kwh_per_m, self.input_kwh_per_m_high
        if low_in is not None or central_in is not None or high_in is not None:
            if low_in is None or central_in is None or high_in is None:
                errors["input_kwh_per_m"] = "Give the input coefficient's low, central and high, or none of them."
            elif not low_in <= central_in <= high_in:
                errors["input_kwh_per_m"] = "Expected low <= central <= high."
            elif self.token_basis != BASIS_OUTPUT:
                errors["token_basis"] = "An input coefficient needs the output token basis."
        if errors:
            raise ValidationError(errors)
