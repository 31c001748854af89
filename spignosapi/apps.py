from django.apps import AppConfig


class SpignosapiConfig(AppConfig):
    name = "spignosapi"
    verbose_name = "Platform"
