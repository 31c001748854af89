from django.apps import AppConfig


class SpignosapiConfig(AppConfig):
    name = "spignosapi"
    verbose_name = "Platform"

    def ready(self) -> None:
        from . import converters

        converters.register()  # before any URL conf is imported
