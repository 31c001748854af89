"""Make sure an admin user exists; print its password only when this command created it."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the admin superuser if missing (password from DJANGO_SUPERUSER_PASSWORD or generated)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin"))

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        username = options["username"]
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(f"admin user {username!r} exists (password unchanged)")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        shown = "from DJANGO_SUPERUSER_PASSWORD" if os.environ.get("DJANGO_SUPERUSER_PASSWORD") else password
        self.stdout.write(f"created admin user {username!r} with password: {shown} (shown once)")
