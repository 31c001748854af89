from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "API keys"

    def ready(self) -> None:
        from . import schema  # noqa: F401  # registers the OpenAPI description of API key authentication
