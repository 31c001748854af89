"""Django REST framework and drf-spectacular."""

from __future__ import annotations

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["spignosapi.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "spignosapi.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "spignosapi.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "spignosapi",
    "DESCRIPTION": "Self-hosted LLM gateway: routing, fallbacks, async jobs, monitoring and energy accounting.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc assets come from the drf-spectacular-sidecar package: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # ReDoc's default fonts (Montserrat, Roboto) are web fonts; the page (templates/drf_spectacular/redoc.html)
    # loads none, so the system's are named instead.
    "REDOC_UI_SETTINGS": {
        "theme": {
            "typography": {
                "fontFamily": "system-ui, sans-serif",
                "headings": {"fontFamily": "system-ui, sans-serif"},
                "code": {"fontFamily": "ui-monospace, Menlo, monospace"},
            }
        }
    },
    "COMPONENT_SPLIT_REQUEST": True,
    # Fields named alike with other choices elsewhere (a roll-up's period, …): the budgets' get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "BudgetMetricEnum": "budgets.models.Budget.Metric",
        "BudgetPeriodEnum": "budgets.models.Budget.Period",
    },
    # Security schemes come from the authentication classes (accounts/schema.py describes the API key).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "spignosapi.api.schema.add_error_responses",
    ],
}
