"""Providers, models, categories with ordered chains and circuit breakers (usage records: ``ledger.models``).

Secrets are never stored: a provider names the environment variable that holds its key.
"""

from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q


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
    # Where it runs, for the carbon routing strategy (routing/strategy.py). Empty: the global setting.
    grid_gco2e_per_kwh = models.FloatField(
        "grid gCO2e/kWh",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0)],
        help_text="Carbon intensity of the grid where it runs; empty = ENERGY_GRID_G_CO2E_PER_KWH.",
    )
    pue = models.FloatField(
        "PUE",
        null=True,
        blank=True,
        validators=[MinValueValidator(1.0)],
        help_text="Its data centre's power usage effectiveness, applied to its models' energy coefficients when "
        "routing by carbon; empty = 1.0.",
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
    # What the model is known to honour: the monitor probes these too (a tool call; a JSON-schema answer).
    supports_tools = models.BooleanField(default=False, help_text="Calls tools (OpenAI tools, tool_choice).")
    supports_structured_output = models.BooleanField(
        default=False, help_text="Answers in a given JSON schema (response_format json_schema)."
    )
    public = models.BooleanField(
        default=False, help_text="Listed on the public status page (/status/); only monitored models are."
    )
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


class Strategy(models.TextChoices):
    """How a category orders its chain for a request (``routing/strategy.py`` says how each one ranks)."""

    ORDERED = "ordered", "Ordered (the chain as written)"
    LATENCY = "latency", "Latency (lowest recent p50 time to first token)"
    COST = "cost", "Cost (lowest expected price for the request)"
    CARBON = "carbon", "Carbon (lowest gCO2e per token)"


class Category(models.Model):
    name = models.SlugField(max_length=50, unique=True)
    description = models.CharField(max_length=300, blank=True)
    keywords = models.JSONField(default=list, blank=True, help_text="Lower-case words that select this category.")
    examples = models.JSONField(default=list, blank=True, help_text="Example requests (semantic routing).")
    strategy = models.CharField(
        max_length=10,
        choices=Strategy.choices,
        default=Strategy.ORDERED,
        help_text="How the chain is ordered for each request; models without fresh data keep their chain order, "
        "after the ranked ones.",
    )
    builtin = models.BooleanField(default=False, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if ModelAlias.objects.filter(name=self.name).exists():
            raise ValidationError({"name": f"{self.name!r} is a model alias: a category cannot shadow it."})


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


# What a client may send as ``model`` and an operator may name an alias: what agent CLIs and SDKs send
# (``claude-sonnet-4-5``, ``claude-3.5-sonnet``, ``llama3.1:8b``, ``claude-3-5-sonnet@20240620``,
# ``anthropic/claude-sonnet-4.5``): segments of letters, digits and ``-_.:@`` joined by single slashes.
# Nothing that a URL path would have to escape, so ``GET /v1/models/<name>`` can serve every alias.
ALIAS_NAME_CHARS = "-a-zA-Z0-9_.:@"
ALIAS_NAME = RegexValidator(
    rf"\A[a-zA-Z0-9][{ALIAS_NAME_CHARS}]*(?:/[{ALIAS_NAME_CHARS}]+)*\Z",  # (\Z: "$" would let a final newline in)
    "Letters, digits and - _ . : @, starting with a letter or digit; single slashes may separate parts.",
    code="invalid_alias_name",
)
# The router's own names for "route it": an alias cannot take them.
RESERVED_MODEL_NAMES = frozenset({"router", "auto"})


class ModelAlias(models.Model):
    """A client-facing model name (what an agent CLI insists on sending) → a category or a concrete model.

    Two nullable foreign keys, exactly one set (a check constraint), rather than a kind and a name: the
    database itself keeps every alias pointing at a row that exists, and PROTECT refuses to delete a
    category or a model that an alias still names, instead of leaving the alias dangling (or silently
    dropping it, as CASCADE would: a client would start getting 404s nobody chose).
    """

    name = models.CharField(max_length=100, unique=True, validators=[ALIAS_NAME])
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="aliases", help_text="Either this…"
    )
    model = models.ForeignKey(
        LLMModel, null=True, blank=True, on_delete=models.PROTECT, related_name="aliases", help_text="…or this."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "model alias"
        verbose_name_plural = "model aliases"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(category__isnull=False, model__isnull=True) | Q(category__isnull=True, model__isnull=False),
                name="alias_has_one_target",
                violation_error_message="An alias names either a category or a model (exactly one).",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} → {self.target}"

    @property
    def target(self) -> str:
        """The category's name or the model's id (the form the API and YAML use)."""
        if self.category is not None:
            return self.category.name
        return self.model.model_id if self.model is not None else ""

    def clean(self) -> None:
        # (Exactly one target: the check constraint, which full_clean() validates too.)
        from django.core.exceptions import ValidationError

        shadowed = shadowed_name(self.name)
        if shadowed:
            raise ValidationError({"name": shadowed})


def shadowed_name(name: str) -> str | None:
    """Why ``name`` cannot be an alias (it is the router's, a category's or a model's), or None."""
    if name in RESERVED_MODEL_NAMES:
        return f"{name!r} is reserved: it asks for the router."
    if Category.objects.filter(name=name).exists():
        return f"{name!r} is a category: an alias cannot shadow it."
    provider, _, model = name.partition("/")
    if model and LLMModel.objects.filter(provider__name=provider, name=model).exists():
        return f"{name!r} is a model: an alias cannot shadow it."
    return None


class ModelLatency(models.Model):
    """A model's recent p50 time to first token, as monitoring last published it (``publish_latency_figures``).

    Routing's own copy, so the latency strategy reads it from an in-memory snapshot and never from
    monitoring's tables: one row per model, overwritten at every publication.
    """

    model = models.OneToOneField(LLMModel, on_delete=models.CASCADE, related_name="latency")
    p50_ttft_ms = models.FloatField(validators=[MinValueValidator(0.0)])
    samples = models.PositiveIntegerField()
    measured_at = models.DateTimeField(help_text="When the newest sample behind the figure was taken.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "model latency"
        verbose_name_plural = "model latencies"

    def __str__(self) -> str:
        return f"{self.model}: p50 {self.p50_ttft_ms:.0f} ms ({self.samples})"


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


class StoredResponse(models.Model):
    """A Responses API answer kept for ``GET /v1/responses/<id>`` and ``previous_response_id`` (issue 15).

    ``body`` is the Response object as it was sent; ``conversation`` the chat messages up to and including
    its output (the instructions excepted: OpenAI does not carry them over to the next response), so a
    follow-up rebuilds its context from one row. Only the key that made it can read it; rows older than
    ``RESPONSES_RETENTION_DAYS`` are neither served nor kept (``routing.tasks.purge_expired_responses``).
    """

    id = models.CharField(primary_key=True, max_length=64)
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(db_index=True)
    body = models.JSONField()
    conversation = models.JSONField()
    # The request's own input, as items with ids (``GET /v1/responses/<id>/input_items``).
    input_items = models.JSONField(default=list)

    def __str__(self) -> str:
        return self.id
