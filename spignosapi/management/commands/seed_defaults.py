"""Seed the defaults every app needs (idempotent: running it twice changes nothing)."""

from __future__ import annotations

import importlib
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "Create the default categories, providers and schedules; safe to run repeatedly."

    def handle(self, *args: Any, **options: Any) -> None:
        # Each app that has defaults exposes ``<app>.seed.seed_defaults() -> str`` (a one-line summary).
        for config in apps.get_app_configs():
            try:
                module = importlib.import_module(f"{config.name}.seed")
            except ModuleNotFoundError as exc:
                if exc.name != f"{config.name}.seed":
                    raise
                continue
            with transaction.atomic():
                summary = module.seed_defaults()
            self.stdout.write(f"{config.label}: {summary}")
        self.stdout.write("defaults seeded")
