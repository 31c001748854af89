"""Providers, models, categories with ordered chains and circuit breakers (usage records: ``ledger.models``).

Secrets are never stored: a provider names the environment variable that holds its key.
"""

from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models


def validate_http_url(value: str) -> None:
    from urllib.parse import urlsplit

    from django.core.exceptions import ValidationError

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Only http(s) URLs with a host are accepted.")


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        AZURE = "azure", "Azure OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        OLLAMA = "ollama", "Ollama"
        OPENROUTER = "openrouter", "OpenRouter"
        LLMAAS = "llmaas", "Cloud Temple LLMaaS"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
        LOCAL = "local", "Local (in-process embedding models)"

    name = models.SlugField(max_length=50, unique=True, help_text="Prefix of model ids: <provider>/<model>.")
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.OPENAI_COMPATIBLE)
    # A CharField, not a URLField: single-label hosts such as http://ollama:11434/v1 are common here.
    base_url = models.CharField(
        max_length=300, blank=True, validators=[validate_http_url], help_text="Empty only for local providers."
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[RegexValidator(r"^[A-Z_][A-Z0-9_]*$", "An environment variable name, e.g. OPENAI_API_KEY.")],
        help_text="Name of the environment variable holding the key (the key itself is never stored).",
    )
    api_version = models.CharField(max_length=40, blank=True, help_text="Azure only.")
    timeout_s = models.FloatField(default=300.0, validators=[MinValueValidator(0.1)])
    connect_timeout_s = models.FloatField(default=10.0, validators=[MinValueValidator(0.1)])
    first_token_timeout_s = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.1)])
    drop_params = models.BooleanField(
        default=False,
        help_text="Drop the request parameters this provider cannot honour (e.g. logprobs on Anthropic) instead "
        "of answering 400 unsupported_parameter.",
    )
    enabled = models.BooleanField(default=True)
    is_demo = models.BooleanField(default=False, help_text="The demo upstream seeded for make run.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if not self.base_url and self.kind != self.Kind.LOCAL:
            raise ValidationError({"base_url": "A base URL is required (only local providers have none)."})


class LLMModel(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat", "Chat"
        EMBEDDING = "embedding", "Embedding"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200, help_text="The model's name at its provider.")
    kind = models.CharField(
        max_length=10, choices=Kind.choices, default=Kind.CHAT, help_text="Chat models route; embedding models embed."
    )
    context_window = models.PositiveIntegerField(default=8192)
    price_in_per_m = models.DecimalField(
        max_digits=12, decimal_places=6, default=0, help_text="USD per million input tokens."
    )
    price_out_per_m = models.DecimalField(
        max_digits=12, decimal_places=6, default=0, help_text="USD per million output tokens."
    )
    energy_kwh_per_m = models.FloatField(
        null=True,
        blank=True,
        help_text="kWh per million tokens, every token (central value); empty = estimated. An energy coefficient "
        "written for this exact model id takes precedence.",
    )
    rpm_budget = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute the provider allows us for this model."
    )
    tpm_budget = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens per minute the provider allows us for this model."
    )
    enabled = models.BooleanField(default=True)
    monitor = models.BooleanField(default=True, help_text="Probed by the availability monitor.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "model"
        ordering = ["provider__name", "name"]
        constraints = [models.UniqueConstraint(fields=["provider", "name"], name="unique_model_per_provider")]

    def __str__(self) -> str:
        return self.model_id

    @property
    def model_id(self) -> str:
        return f"{self.provider.name}/{self.name}"


class Category(models.Model):
    name = models.SlugField(max_length=50, unique=True)
    description = models.CharField(max_length=300, blank=True)
    keywords = models.JSONField(default=list, blank=True, help_text="Lower-case words that select this category.")
    examples = models.JSONField(default=list, blank=True, help_text="Example requests (semantic routing).")
    builtin = models.BooleanField(default=False, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ChainEntry(models.Model):
    """One model in a category's ordered fallback chain."""

    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="chain")
    model = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="chain_entries")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "chain entry"
        verbose_name_plural = "model chain"
        ordering = ["category", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["category", "model"], name="unique_model_per_chain")]

    def __str__(self) -> str:
        return f"{self.category.name}#{self.position}: {self.model}"


class CircuitBreaker(models.Model):
    class State(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open"

    model = models.OneToOneField(LLMModel, on_delete=models.CASCADE, related_name="breaker")
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Unix times (seconds) from the breaker's injectable clock.
    opened_at = models.FloatField(null=True, blank=True)
    trial_started_at = models.FloatField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.model}: {self.state}"
