"""Default categories and chains, the demo upstream, and providers registered from the environment.

Idempotent: existing rows are left as an admin may have edited them; only what is missing is created.
"""

from __future__ import annotations

import os

from django.conf import settings

from .models import Category, ChainEntry, LLMModel, Provider
from .services import routing_changed

BUILTIN_CATEGORIES: dict[str, tuple[str, list[str]]] = {
    "tools": ("Requests that carry tools (function calling).", []),
    "code": (
        "Programming: writing, fixing and explaining code.",
        [
            "python",
            "javascript",
            "typescript",
            "java",
            "rust",
            "golang",
            "sql",
            "code",
            "function",
            "class",
            "method",
            "bug",
            "error",
            "exception",
            "stack trace",
            "traceback",
            "compile",
            "regex",
            "api",
            "debug",
            "refactor",
            "script",
            "json",
            "html",
            "css",
            "docker",
            "git",
        ],
    ),
    "reasoning": (
        "Analysis, explanation, maths and step-by-step thinking.",
        [
            "why",
            "how",
            "explain",
            "compare",
            "prove",
            "proof",
            "reason",
            "analyze",
            "analyse",
            "calculate",
            "solve",
            "derive",
            "evaluate",
            "tradeoffs",
            "pros and cons",
            "step by step",
            "math",
            "equation",
        ],
    ),
    "conversation": (
        "Chat, short messages and everything else (the default).",
        ["hello", "hi", "thanks", "chat", "joke", "story"],
    ),
}

# Example requests per built-in category, for the semantic routing mode (embedding similarity).
BUILTIN_EXAMPLES: dict[str, list[str]] = {
    "tools": [],
    "code": [
        "Write a Python function that parses a CSV file",
        "Why does my JavaScript code throw undefined is not a function?",
        "Fix this SQL query that returns duplicate rows",
        "Refactor this class to use dependency injection",
        "Write a unit test for this method",
    ],
    "reasoning": [
        "Explain why the sky is blue",
        "Compare the pros and cons of nuclear and solar power",
        "Prove that the square root of two is irrational",
        "If a train leaves at 3pm at 80 km/h, when does it arrive 200 km away?",
        "What are the economic consequences of raising interest rates?",
    ],
    "conversation": [
        "Hello, how are you today?",
        "Tell me a joke",
        "Thanks for your help!",
        "What should I cook for dinner tonight?",
        "Write a short poem about autumn",
    ],
}

# Embedding models: (provider, name) -> price in per M tokens. The local one runs offline in-process.
EMBEDDING_MODELS = {("local", "all-minilm-l6-v2"): 0.0, ("demo", "demo-embed"): 0.02}

DEMO_MODELS = {
    # name: (price in, price out per M tokens, kWh per M tokens)
    "demo-fast": (0.10, 0.40, 0.05),
    "demo-smart": (1.00, 4.00, 0.30),
}
DEMO_CHAINS = {
    "tools": ["demo/demo-smart", "demo/demo-fast"],
    "code": ["demo/demo-smart", "demo/demo-fast"],
    "reasoning": ["demo/demo-smart", "demo/demo-fast"],
    "conversation": ["demo/demo-fast", "demo/demo-smart"],
}

# Providers that register themselves when their variable is set (contract section 1).
ENV_PROVIDERS = [
    # env var, provider name, kind, base URL, models (name, price in, price out)
    (
        "OPENAI_API_KEY",
        "openai",
        "openai",
        "https://api.openai.com/v1",
        [("gpt-4o-mini", 0.15, 0.60), ("gpt-4o", 2.50, 10.00)],
    ),
    (
        "ANTHROPIC_API_KEY",
        "anthropic",
        "anthropic",
        "https://api.anthropic.com",
        [("claude-3-5-haiku-latest", 0.80, 4.00), ("claude-sonnet-4-0", 3.00, 15.00)],
    ),
    (
        "OPENROUTER_API_KEY",
        "openrouter",
        "openrouter",
        "https://openrouter.ai/api/v1",
        [("meta-llama/llama-3.1-8b-instruct", 0.02, 0.05)],
    ),
    ("LLMAAS_API_KEY", "llmaas", "llmaas", "https://api.ai.cloud-temple.com/v1", [("granite3.3:8b", 0.0, 0.0)]),
]


def _provider(name: str, kind: str, base_url: str, api_key_env: str = "", is_demo: bool = False) -> bool:
    _, created = Provider.objects.get_or_create(
        name=name, defaults={"kind": kind, "base_url": base_url, "api_key_env": api_key_env, "is_demo": is_demo}
    )
    return created


def _model(
    provider: str, name: str, price_in: float, price_out: float, kwh: float | None, *, public: bool = False
) -> bool:
    # The demo upstream honours tools and JSON schemas: its models are probed for both.
    demo = provider == "demo"
    _, created = LLMModel.objects.get_or_create(
        provider=Provider.objects.get(name=provider),
        name=name,
        defaults={
            "price_in_per_m": price_in,
            "price_out_per_m": price_out,
            "energy_kwh_per_m": kwh,
            "supports_tools": demo,
            "supports_structured_output": demo,
            "public": public,
        },
    )
    return created


def seed_defaults() -> str:
    created = 0
    created += _provider("demo", "openai_compatible", settings.DEMO_UPSTREAM_URL, is_demo=True)
    # The demo upstream is ours: follow its address when FAKE_UPSTREAM_PORT or DEMO_UPSTREAM_URL change.
    Provider.objects.filter(name="demo", is_demo=True).exclude(base_url=settings.DEMO_UPSTREAM_URL).update(
        base_url=settings.DEMO_UPSTREAM_URL
    )
    for name, (price_in, price_out, kwh) in DEMO_MODELS.items():
        # The demo models are on the public status page out of the box, so /status/ shows something.
        created += _model("demo", name, price_in, price_out, kwh, public=True)
    created += _provider("local", "local", "")
    for (provider, name), price_in in EMBEDDING_MODELS.items():
        _, was_created = LLMModel.objects.get_or_create(
            provider=Provider.objects.get(name=provider),
            name=name,
            defaults={"kind": LLMModel.Kind.EMBEDDING, "price_in_per_m": price_in, "monitor": False},
        )
        created += was_created
    real_models: list[str] = []
    for env, name, kind, base_url, models in ENV_PROVIDERS:
        if os.environ.get(env):
            created += _provider(name, kind, base_url, api_key_env=env)
            for model_name, price_in, price_out in models:
                created += _model(name, model_name, price_in, price_out, None)
                real_models.append(f"{name}/{model_name}")
    if os.environ.get("OLLAMA_BASE_URL"):
        base = os.environ["OLLAMA_BASE_URL"].rstrip("/")
        created += _provider("ollama", "ollama", base if base.endswith("/v1") else f"{base}/v1")
        created += _model("ollama", "llama3.2", 0.0, 0.0, None)
        real_models.append("ollama/llama3.2")
    for name, (description, keywords) in BUILTIN_CATEGORIES.items():
        category, was_created = Category.objects.get_or_create(
            name=name,
            defaults={
                "description": description,
                "keywords": keywords,
                "examples": BUILTIN_EXAMPLES[name],
                "builtin": True,
            },
        )
        created += was_created
        if not category.builtin:
            category.builtin = True
            category.save(update_fields=["builtin"])
        if not ChainEntry.objects.filter(category=category).exists():
            # Real providers first when configured, then the demo upstream as the last resort.
            chain = real_models[:2] + DEMO_CHAINS[name]
            for position, model_id in enumerate(chain):
                provider, _, model_name = model_id.partition("/")
                model = LLMModel.objects.get(provider__name=provider, name=model_name)
                ChainEntry.objects.create(category=category, model=model, position=position)
                created += 1
    routing_changed()
    return f"{created} rows created" if created else "already seeded"
